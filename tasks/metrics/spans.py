"""Span-level precision, recall and F1, computed exactly as conlleval.pl (version 2004-01-26).

:func:`conlleval` replays the Perl script line by line: the same ``startOfChunk`` /
``endOfChunk`` rules, the same "chunk still correct" bookkeeping, a sentence boundary between
sentences, the same floating-point formulas. That makes it *lenient*: an ``I-X`` at the start
of a sentence, after ``O`` or after another type opens a chunk, and IOB1 and IOB2 need no
conversion. :func:`format_conlleval_report` prints the script's table, character for
character.

One deliberate addition: the Perl rules predate BIOES (they know ``E-`` only in its IOE
meaning and ``S-`` not at all, so ``S-PER S-PER`` would be one chunk). When the tags use
``E-``/``S-``, both sequences are first converted to IOB2, which is what BIOES pipelines do
before calling conlleval. Token accuracy is always taken on the tags as given.

:func:`strict_f1` wraps seqeval's strict mode, where a chunk only counts when it is well
formed in the declared scheme.

All scores are percentages (0-100), as conlleval prints them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from data.tags import convert, normalize_scheme, split_tag

_BOUNDARY = "-X-"  # conlleval's sentence-boundary marker in the first column


@dataclass
class ChunkCounts:
    """Chunk counts for one type (or all): gold, predicted, and correctly predicted."""

    gold: int = 0
    predicted: int = 0
    correct: int = 0

    @property
    def precision(self) -> float:
        return 100 * self.correct / self.predicted if self.predicted > 0 else 0.0

    @property
    def recall(self) -> float:
        return 100 * self.correct / self.gold if self.gold > 0 else 0.0

    @property
    def f1(self) -> float:
        precision, recall = self.precision, self.recall
        if precision + recall == 0:
            return 0.0
        return 2 * precision * recall / (precision + recall)


@dataclass
class ConllevalResult:
    """Everything conlleval.pl counts."""

    tokens: int = 0
    correct_tags: int = 0
    overall: ChunkCounts = field(default_factory=ChunkCounts)
    per_type: dict[str, ChunkCounts] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return 100 * self.correct_tags / self.tokens if self.tokens > 0 else 0.0

    @property
    def precision(self) -> float:
        return self.overall.precision

    @property
    def recall(self) -> float:
        return self.overall.recall

    @property
    def f1(self) -> float:
        return self.overall.f1

    def type_counts(self, chunk_type: str) -> ChunkCounts:
        return self.per_type.setdefault(chunk_type, ChunkCounts())


# --------------------------------------------------------------------------- conlleval rules


def end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """conlleval's ``endOfChunk``: did a chunk end between the previous and current word?"""
    chunk_end = (prev_tag, tag) in {
        ("B", "B"),
        ("B", "O"),
        ("I", "B"),
        ("I", "O"),
        ("E", "E"),
        ("E", "I"),
        ("E", "O"),
    }
    if prev_tag != "O" and prev_tag != "." and prev_type != type_:
        chunk_end = True
    # "corrected 1998-12-22: these chunks are assumed to have length 1"
    if prev_tag in ("]", "["):
        chunk_end = True
    return chunk_end


def start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """conlleval's ``startOfChunk``: did a chunk start between the previous and current word?"""
    chunk_start = (prev_tag, tag) in {
        ("B", "B"),
        ("I", "B"),
        ("O", "B"),
        ("O", "I"),
        ("E", "E"),
        ("E", "I"),
        ("O", "E"),
    }
    if tag != "O" and tag != "." and prev_type != type_:
        chunk_start = True
    if tag in ("[", "]"):
        chunk_start = True
    return chunk_start


def _conlleval_split(tag: str) -> tuple[str, str]:
    """Split a tag the way the Perl regex ``^([^-]*)-(.*)$`` does."""
    prefix, hyphen, chunk_type = tag.partition("-")
    if not hyphen:
        return tag, ""
    # Perl's `$type ? $type : ""` turns the type "0" into "" as well.
    return prefix, "" if chunk_type == "0" else chunk_type


class _ConllevalCounter:
    """The body of conlleval.pl's main loop, fed one line's (first item, gold, guess) at a time."""

    def __init__(self) -> None:
        self.result = ConllevalResult()
        self.in_correct = False
        self.last_correct, self.last_correct_type = "O", ""
        self.last_guessed, self.last_guessed_type = "O", ""

    def add_boundary(self) -> None:
        self.add_line(_BOUNDARY, "O", "O")

    def add_line(self, first_item: str, gold_tag: str, guessed_tag: str) -> None:
        correct, correct_type = _conlleval_split(gold_tag)
        guessed, guessed_type = _conlleval_split(guessed_tag)
        if first_item == _BOUNDARY:
            guessed = "O"  # "sentence breaks should always be counted as out of chunk"
        self._close_correct_chunk(correct, correct_type, guessed, guessed_type)
        self._count_chunk_starts(correct, correct_type, guessed, guessed_type)
        if first_item != _BOUNDARY:
            if correct == guessed and guessed_type == correct_type:
                self.result.correct_tags += 1
            self.result.tokens += 1
        self.last_guessed, self.last_correct = guessed, correct
        self.last_guessed_type, self.last_correct_type = guessed_type, correct_type

    def _close_correct_chunk(self, correct: str, correct_type: str, guessed: str, guessed_type: str) -> None:
        if not self.in_correct:
            return
        gold_ends = end_of_chunk(self.last_correct, correct, self.last_correct_type, correct_type)
        guess_ends = end_of_chunk(self.last_guessed, guessed, self.last_guessed_type, guessed_type)
        if gold_ends and guess_ends and self.last_guessed_type == self.last_correct_type:
            self.in_correct = False
            self._count_correct(self.last_correct_type)
        elif gold_ends != guess_ends or guessed_type != correct_type:
            self.in_correct = False

    def _count_chunk_starts(self, correct: str, correct_type: str, guessed: str, guessed_type: str) -> None:
        gold_starts = start_of_chunk(self.last_correct, correct, self.last_correct_type, correct_type)
        guess_starts = start_of_chunk(self.last_guessed, guessed, self.last_guessed_type, guessed_type)
        if gold_starts and guess_starts and guessed_type == correct_type:
            self.in_correct = True
        if gold_starts:
            self.result.overall.gold += 1
            self.result.type_counts(correct_type).gold += 1
        if guess_starts:
            self.result.overall.predicted += 1
            self.result.type_counts(guessed_type).predicted += 1

    def _count_correct(self, chunk_type: str) -> None:
        self.result.overall.correct += 1
        self.result.type_counts(chunk_type).correct += 1

    def finish(self) -> ConllevalResult:
        if self.in_correct:
            self._count_correct(self.last_correct_type)
            self.in_correct = False
        self.result.per_type = dict(sorted(self.result.per_type.items()))
        return self.result


# --------------------------------------------------------------------------- public API


def _uses_bioes(tag_sequences: Iterable[Sequence[str]]) -> bool:
    return any(split_tag(tag)[0] in ("E", "S") for tags in tag_sequences for tag in tags)


def _check_parallel(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted ones")
    for index, (gold_tags, pred_tags) in enumerate(zip(gold, pred)):
        if len(gold_tags) != len(pred_tags):
            raise ValueError(f"sentence {index}: {len(gold_tags)} gold tags but {len(pred_tags)} predicted")


def conlleval(
    gold: Sequence[Sequence[str]],
    pred: Sequence[Sequence[str]],
    scheme: str | None = None,
) -> ConllevalResult:
    """Score predicted against gold tags, one list per sentence, exactly as conlleval.pl.

    ``scheme=None`` treats sequences that use ``E-``/``S-`` as BIOES and everything else as
    IOB (the Perl rules read IOB1, IOB2 and IO alike); pass ``"BIOES"`` to force conversion.
    """
    _check_parallel(gold, pred)
    chunk_gold, chunk_pred = gold, pred
    is_bioes = _uses_bioes(gold) or _uses_bioes(pred)
    if scheme is not None:
        is_bioes = normalize_scheme(scheme) == "BIOES"
    if is_bioes:
        chunk_gold = [convert(tags, "BIOES", "IOB2") for tags in gold]
        chunk_pred = [convert(tags, "BIOES", "IOB2") for tags in pred]

    counter = _ConllevalCounter()
    for gold_tags, pred_tags in zip(chunk_gold, chunk_pred):
        for gold_tag, pred_tag in zip(gold_tags, pred_tags):
            counter.add_line("", gold_tag, pred_tag)
        counter.add_boundary()
    result = counter.finish()
    if is_bioes:
        result.correct_tags = sum(
            g == p for gold_tags, pred_tags in zip(gold, pred) for g, p in zip(gold_tags, pred_tags)
        )
    return result


def conlleval_file(path: str | Path, delimiter: str = " ") -> ConllevalResult:
    """Score a ``token ... gold pred`` file as ``conlleval.pl -d DELIMITER < path`` does.

    As in the Perl script, a line whose first item is ``-DOCSTART-`` counts as a token, and
    a line whose first item is ``-X-`` is a sentence boundary.
    """
    counter = _ConllevalCounter()
    expected_fields: int | None = None
    text = Path(path).read_text(encoding="utf-8")
    for number, line in enumerate(text.split("\n")[: -1 if text.endswith("\n") else None], 1):
        fields = line.split(delimiter)
        while fields and fields[-1] == "":
            fields.pop()  # Perl's split drops trailing empty fields
        if expected_fields is None:
            expected_fields = len(fields) or None  # a leading blank line fixes nothing
        elif fields and len(fields) != expected_fields:
            raise ValueError(f"{path}:{number}: expected {expected_fields} fields, found {len(fields)}")
        if not fields or fields[0] == _BOUNDARY:
            fields = [_BOUNDARY, "O", "O"]
        if len(fields) < 2:
            raise ValueError(f"{path}:{number}: expected at least a gold and a predicted tag")
        first_item = fields[0] if len(fields) > 2 else ""
        counter.add_line(first_item, fields[-2], fields[-1])
    return counter.finish()


def format_conlleval_report(result: ConllevalResult) -> str:
    """The text conlleval.pl prints (without ``-l``), newline-terminated lines."""
    overall = result.overall
    lines = [
        f"processed {result.tokens} tokens with {overall.gold} phrases; "
        f"found: {overall.predicted} phrases; correct: {overall.correct}."
    ]
    if result.tokens > 0:
        lines.append(
            f"accuracy: {result.accuracy:6.2f}%; precision: {overall.precision:6.2f}%; "
            f"recall: {overall.recall:6.2f}%; FB1: {overall.f1:6.2f}"
        )
    for chunk_type in _perl_sorted_types(result.per_type):
        counts = result.per_type[chunk_type]
        # Perl pads byte strings: a non-ASCII type takes its UTF-8 length.
        padding = " " * max(0, 17 - len(chunk_type.encode("utf-8")))
        lines.append(
            f"{padding}{chunk_type}: precision: {counts.precision:6.2f}%; "
            f"recall: {counts.recall:6.2f}%; FB1: {counts.f1:6.2f}  {counts.predicted}"
        )
    return "".join(line + "\n" for line in lines)


def _perl_sorted_types(per_type: dict[str, ChunkCounts]) -> list[str]:
    """The script's ``@sortedTypes``, quirk included.

    It sorts the gold and the predicted type names together and drops a name equal to the
    one before it, but tests the previous name for truth first: the untyped chunks of plain
    ``B``/``I`` tags (type "") are therefore listed twice when both sides have some.
    """
    names = sorted(
        [name for name, counts in per_type.items() if counts.gold > 0]
        + [name for name, counts in per_type.items() if counts.predicted > 0]
    )
    ordered: list[str] = []
    last: str | None = None
    for name in names:
        if not last or last != name:
            ordered.append(name)
        last = name
    return ordered


def strict_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scheme: str = "IOB2") -> float:
    """Micro F1 (percent) of seqeval's strict mode for ``scheme`` ``IOB2`` or ``BIOES``.

    Unlike conlleval, a chunk only exists when it is well formed: in IOB2 ``I-PER I-PER``
    without a ``B-PER`` is no entity at all.
    """
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2, IOBES

    seqeval_schemes = {"IOB2": IOB2, "BIOES": IOBES}
    name = normalize_scheme(scheme)
    if name not in seqeval_schemes:
        raise ValueError(
            f"strict mode supports IOB2 and BIOES, not {scheme!r} "
            "(seqeval's strict IOB1 is not reliable: convert the gold tags to IOB2 first)"
        )
    _check_parallel(gold, pred)
    score = f1_score(
        [list(tags) for tags in gold],
        [list(tags) for tags in pred],
        mode="strict",
        scheme=seqeval_schemes[name],
        zero_division=0,
    )
    return 100 * float(score)
