"""Streaming reader for a pretraining corpus: one tokenised sentence per line, plain, .xz or .gz.

Never loads the file whole: sentences are read line by line; the trainer shuffles them within a
bounded buffer and groups them into batches of similar length under a token budget.

A corpus is one file or, as bilm-tf's ``--train_prefix``, a glob of shard files
(``'DIR/*.txt'``; :class:`Corpus`). Shards are read one after another in sorted path order, so
every run (and every resumed run) sees the same stream; a position in it is ``(shard, line)``.
"""

from __future__ import annotations

import glob
import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from data.errors import DataFormatError
from data.text import open_binary, read_lines
from data.warnings import CONTROL_CHARACTERS, Finding, control_character_finding, describe_control, report

from .errors import ElmoFileError


def _check_corpus_file(path: Path) -> None:
    if path.is_dir():
        raise ElmoFileError(f"{path}: is a directory (expected a corpus file, one tokenised sentence per line)")
    if not path.is_file():
        raise ElmoFileError(f"{path}: corpus file not found")


def open_text(path: str | Path) -> TextIO:
    """The corpus as a UTF-8 text handle (``.xz``/``.gz``/``.bz2`` decompressed on the fly)."""
    path = Path(path)
    _check_corpus_file(path)
    return io.TextIOWrapper(open_binary(path), encoding="utf-8")


def iter_sentences(
    path: str | Path, max_tokens: int, skip: int = 0, stats: dict | None = None
) -> Iterator[tuple[int, list[str]]]:
    """``(line index, tokens)`` of sentences with at most ``max_tokens`` tokens, from line ``skip``
    on (0-based indices); over-long and empty lines are counted in ``stats`` (never dropped
    silently). Lines are read by :func:`data.text.read_lines` (strict UTF-8)."""
    path = Path(path)
    _check_corpus_file(path)
    stats = stats if stats is not None else {}
    stats.setdefault("lines", 0)
    stats.setdefault("too_long", 0)
    stats.setdefault("empty", 0)
    try:
        for number, line in read_lines(path):
            index = number - 1
            if index < skip:
                continue
            stats["lines"] += 1
            tokens = line.split()
            if not tokens:
                stats["empty"] += 1
            elif len(tokens) > max_tokens:
                stats["too_long"] += 1
            else:
                yield index, tokens
    except DataFormatError as err:  # not UTF-8 (file:line), a damaged .xz/.gz
        raise ElmoFileError(str(err)) from None


def check_corpus(path: str | Path, max_tokens: int) -> dict:
    """Read the whole corpus once, before training: fail on an empty corpus or one whose sentences
    are all too long, and report as counted warnings (:mod:`data.warnings`; errors under
    ``strict``) the sentences that training skips as longer than ``max_tokens`` (how many, and
    what share) and tokens holding control characters. Returns the counts: ``lines``,
    ``sentences`` (non-empty lines), ``too_long``, ``empty``."""
    path = Path(path)
    _check_corpus_file(path)
    too_long, controls = _corpus_findings(str(path), max_tokens)
    counts = _scan_corpus(path, max_tokens, too_long, controls)
    too_long.total = counts["sentences"]
    report(too_long)
    report(controls)
    return counts


def _corpus_findings(where: str, max_tokens: int) -> tuple[Finding, Finding]:
    too_long = Finding(
        "skipped-too-long",
        where,
        f"sentence skipped as longer than max_sentence_tokens={max_tokens}",
        f"sentences skipped as longer than max_sentence_tokens={max_tokens}",
        hint="raise max_sentence_tokens to keep them",
    )
    return too_long, control_character_finding(where)


def _scan_corpus(path: Path, max_tokens: int, too_long: Finding, controls: Finding, shard: bool = False) -> dict:
    """Count one file's lines into the findings (``shard``: name the file in each example)."""
    lines = empty = long = 0
    where = f"{path.name} line " if shard else ""
    try:
        for number, line in read_lines(path):
            lines += 1
            tokens = line.split()
            if not tokens:
                empty += 1
            elif len(tokens) > max_tokens:
                long += 1
                too_long.add(
                    None if shard else number,
                    f"{where}{number}: {len(tokens)} tokens" if shard else f"{len(tokens)} tokens",
                )
            else:
                control = CONTROL_CHARACTERS.search(line)
                if control is not None:
                    detail = describe_control(line, control)
                    controls.add(None if shard else number, f"{where}{number}: {detail}" if shard else detail)
    except DataFormatError as err:  # not UTF-8 (file:line), a damaged .xz/.gz
        raise ElmoFileError(str(err)) from None
    if lines == empty:
        raise ElmoFileError(f"{path}: the corpus is empty (expected one tokenised sentence per line)")
    if long == lines - empty:
        raise ElmoFileError(f"{path}: all {long} sentences are longer than max_sentence_tokens={max_tokens}")
    return {"lines": lines, "sentences": lines - empty, "too_long": long, "empty": empty}


def batches_of(buffer: list[list[str]], batch_tokens: int, rng: random.Random) -> list[list[list[str]]]:
    """Shuffle a buffer, sort it by length, cut it into batches whose padded size stays under
    ``batch_tokens``, and return the batches in random order (deterministic given ``rng``)."""
    rng.shuffle(buffer)
    buffer.sort(key=len)
    batches, current = [], []
    for sentence in buffer:
        if current and (len(current) + 1) * (len(sentence) + 2) > batch_tokens:
            batches.append(current)
            current = []
        current.append(sentence)
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


GLOB_CHARACTERS = "*?["


class Corpus:
    """One corpus file or a glob of shards (bilm-tf's ``--train_prefix``), read in sorted order.

    ``spec`` is a path, or a pattern with ``*``, ``?`` or ``[`` when no file has that very name;
    ``what`` names the argument in messages (``--train``). A pattern that matches no file is an
    :class:`ElmoFileError`; directories it matches are skipped.
    """

    def __init__(self, spec: str | Path, what: str = "corpus"):
        self.spec, self.what = str(spec), what
        path = Path(self.spec)
        if any(c in self.spec for c in GLOB_CHARACTERS) and not path.exists():
            matches = sorted(glob.glob(self.spec))
            files = [Path(m) for m in matches if Path(m).is_file()]
            if not files:
                found = f" (only directories: {', '.join(matches[:3])})" if matches else ""
                raise ElmoFileError(
                    f"{what} '{self.spec}': the pattern matches no file{found}; expected shard files of "
                    "one tokenised sentence per line, e.g. 'DIR/*.txt' (quoted, so the shell does not expand it)"
                )
            self.shards = files
        else:
            _check_corpus_file(path)
            self.shards = [path]

    def __len__(self) -> int:
        return len(self.shards)

    def describe(self) -> str:
        if len(self.shards) == 1:
            return str(self.shards[0])
        return f"'{self.spec}' ({len(self.shards)} shards, {self.shards[0].name} ... {self.shards[-1].name})"

    def iter_sentences(
        self, max_tokens: int, start: tuple[int, int] = (0, 0), stats: dict | None = None
    ) -> Iterator[tuple[tuple[int, int], list[str]]]:
        """``((shard index, line index), tokens)`` from line ``start[1]`` of shard ``start[0]`` on,
        through the following shards (see :func:`iter_sentences`)."""
        first_shard, first_line = start
        for index in range(first_shard, len(self.shards)):
            skip = first_line if index == first_shard else 0
            for line, tokens in iter_sentences(self.shards[index], max_tokens, skip=skip, stats=stats):
                yield (index, line), tokens

    def check(self, max_tokens: int) -> dict:
        """Fail early on a shard that is empty or whose sentences are all too long; report the
        sentences skipped as too long (and control characters) over all shards as one counted
        warning each (see :func:`check_corpus`). Returns the counts summed over the shards."""
        if len(self.shards) == 1:
            return check_corpus(self.shards[0], max_tokens)
        too_long, controls = _corpus_findings(self.spec, max_tokens)
        totals: dict = {}
        for shard in self.shards:
            for key, value in _scan_corpus(shard, max_tokens, too_long, controls, shard=True).items():
                totals[key] = totals.get(key, 0) + value
        too_long.total = totals["sentences"]
        report(too_long)
        report(controls)
        return totals
