"""Counted warnings: input that is read but suspicious is reported, never accepted silently.

A reader that meets something it can read but that is probably a mistake (a tag transition the
file's scheme forbids, a control character inside a token, a first line taken for a header by a
guess, a gold key that is no WordNet 3.0 sense key, a sentence skipped as too long ...) collects
every occurrence of one kind in one file into a :class:`Finding` (a count and the first few
``FILE:LINE`` examples) and hands it to :func:`report`. What happens then depends on the
:func:`collecting` block it runs in:

* normally the finding becomes **one summary line**, e.g.
  ``warning: 3 illegal tag transitions (IOB1) in eng.testa (first at line 1234: B-PER after O;
  also lines 1301, 2710); see --strict``, printed by the command line as it happens (and kept in
  the block's ``findings``, e.g. for a run's ``results.json``);
* under ``strict`` (``--strict`` on the command line, ``data.strict: true`` / ``strict: true`` in
  a config) it is a :class:`~data.errors.DataFormatError` naming the first occurrence
  (``eng.testa:1234: illegal tag transition (IOB1): B-PER after O (3 in this file; ...)``);
* outside any block (a library call) it is a Python warning of class :class:`DataWarning`.

Blocks nest: an inner block is strict when it or any block around it is, and passes its findings
on to the block around it, so the command line prints each finding once.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from data.errors import DataFormatError

MAX_EXAMPLES = 3
STRICT_NOTE = "see --strict"

# Unicode category Cc without the tab, line feed and carriage return: NUL, escape, form feed, DEL,
# the C1 controls ... Text never holds them inside a word; a binary file or a broken export does.
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTROL_NAMES = {0: "NUL", 0x0B: "vertical tab", 0x0C: "form feed", 0x1B: "ESC", 0x7F: "DEL"}


class DataWarning(UserWarning):
    """A suspicious input that was read anyway (raised as an error under ``strict``)."""


class StrictDataError(DataFormatError):
    """A counted warning turned into an error by ``--strict`` / ``data.strict``; ``finding`` is it."""

    def __init__(self, finding: Finding):
        self.finding = finding
        line, detail = finding.examples[0]
        hint = f"; {finding.hint}" if finding.hint else ""
        super().__init__(
            finding.path, line, f"{finding.what}: {detail} ({finding.tally()}; {finding.strict_note}){hint}"
        )


@dataclass
class Finding:
    """Every occurrence of one kind of suspicious input in one file.

    ``what`` / ``what_plural`` name one occurrence and several (``"illegal tag transition (IOB1)"``);
    ``total`` (optional) is what the count is out of, for a percentage; ``hint`` says what to do
    (appended to the summary line).
    """

    kind: str
    path: str
    what: str
    what_plural: str = ""
    count: int = 0
    examples: list[tuple[int | None, str]] = field(default_factory=list)
    total: int | None = None
    hint: str = ""
    strict_note: str = "an error under --strict, a counted warning otherwise"

    def __post_init__(self) -> None:
        self.path = str(self.path)
        self.what_plural = self.what_plural or f"{self.what}s"

    def add(self, line: int | None, detail: str) -> None:
        """One more occurrence (the first :data:`MAX_EXAMPLES` keep their line and detail)."""
        self.count += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append((line, shorten(detail)))

    def __bool__(self) -> bool:
        return self.count > 0

    def counted(self) -> str:
        """``3 illegal tag transitions`` or, with a total, ``30 of 40 sentences ... (75.0%)``."""
        noun = self.what if self.count == 1 and not self.total else self.what_plural  # "1 of 4 sentences"
        if self.total:
            return f"{self.count:,} of {self.total:,} {noun} ({100 * self.count / self.total:.1f}%)"
        return f"{self.count:,} {noun}"

    def tally(self) -> str:
        if self.total:
            return f"{self.count:,} of {self.total:,} in this file, {100 * self.count / self.total:.1f}%"
        return f"{self.count:,} in this file"

    def summary(self) -> str:
        """One line: what, how many, where, the first examples, the hint."""
        first_line, first_detail = self.examples[0] if self.examples else (None, "")
        where = f"first at line {first_line}" if first_line is not None else "first"
        text = f"{self.counted()} in {self.path} ({where}: {first_detail}"
        later = [str(line) for line, _ in self.examples[1:] if line is not None]
        if later:
            text += f"; also line{'s' if len(later) > 1 else ''} {', '.join(later)}"
            if self.count > len(self.examples):
                text += ", ..."
        text += ")"
        return text + (f"; {self.hint}" if self.hint else "")

    def line(self) -> str:
        """The summary as the command line prints it."""
        return f"warning: {self.summary()}; {STRICT_NOTE}"

    def error(self) -> StrictDataError:
        return StrictDataError(self)


class Collector:
    """The findings of one :func:`collecting` block; see the module docstring."""

    def __init__(self, strict: bool = False, log: Callable[[str], None] | None = None, parent: Collector | None = None):
        self.strict, self.log, self.parent = strict, log, parent
        self.findings: list[Finding] = []
        self._printed: set[str] = set()  # a file read again (the cells of a layer grid) is not repeated

    def report(self, finding: Finding) -> None:
        if not finding:
            return
        if self.strict:
            raise finding.error()
        self.findings.append(finding)
        if self.parent is not None:
            self.parent.report(finding)
        elif self.log is not None:
            line = finding.line()
            if line not in self._printed:
                self._printed.add(line)
                self.log(line)
        else:
            warnings.warn(finding.summary(), DataWarning, stacklevel=4)

    def counts(self) -> dict[str, int]:
        """Occurrences by kind, over every file."""
        counts: dict[str, int] = {}
        for finding in self.findings:
            counts[finding.kind] = counts.get(finding.kind, 0) + finding.count
        return counts

    def summaries(self) -> list[str]:
        return [finding.summary() for finding in self.findings]


_CURRENT: ContextVar[Collector | None] = ContextVar("data_warnings_collector", default=None)


@contextmanager
def collecting(strict: bool | None = None, log: Callable[[str], None] | None = None) -> Iterator[Collector]:
    """A block whose findings are collected (and printed through ``log`` when it is the outermost
    block with a ``log``); ``strict`` turns them into errors. Strict when this block or one around
    it is."""
    parent = _CURRENT.get()
    collector = Collector(bool(strict) or (parent is not None and parent.strict), log, parent)
    token = _CURRENT.set(collector)
    try:
        yield collector
    finally:
        _CURRENT.reset(token)


def report(finding: Finding) -> None:
    """Hand a finding to the innermost :func:`collecting` block (a :class:`DataWarning` outside
    any block; a :class:`StrictDataError` when the block is strict). Empty findings are ignored."""
    if not finding:
        return
    collector = _CURRENT.get()
    if collector is None:
        warnings.warn(finding.summary(), DataWarning, stacklevel=3)
    else:
        collector.report(finding)


def is_strict() -> bool:
    collector = _CURRENT.get()
    return collector is not None and collector.strict


# -- helpers for readers and messages -----------------------------------------------------------------
def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters (``...`` marks the cut)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def brief_list(items, limit: int = 8, width: int = 40) -> str:
    """``'a', 'b', 'c' and 2,000 more``: a list for a message that never runs past one line."""
    items = list(items)
    shown = ", ".join(repr(shorten(str(item), width)) for item in items[:limit])
    more = len(items) - limit
    return shown + (f" and {more:,} more" if more > 0 else "")


def control_character_finding(path: str | Path, what: str = "token with a control character") -> Finding:
    """A finding for control characters (NUL, ESC, DEL ...) kept inside tokens."""
    return Finding("control-character", str(path), what, "tokens with control characters")


def describe_control(text: str, match: re.Match) -> str:
    """``U+0000 (NUL) at column 4 of 'ab\\x00c'``."""
    code = ord(match.group())
    name = _CONTROL_NAMES.get(code, "control character")
    start = max(0, match.start() - 20)
    around = ("..." if start else "") + repr(text[start : match.end() + 20])
    return f"U+{code:04X} ({name}) at column {match.start() + 1}: {around}"


__all__ = [
    "CONTROL_CHARACTERS",
    "Collector",
    "DataWarning",
    "Finding",
    "StrictDataError",
    "brief_list",
    "collecting",
    "control_character_finding",
    "describe_control",
    "is_strict",
    "report",
    "shorten",
]
