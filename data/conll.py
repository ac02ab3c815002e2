"""CoNLL column files: one token per line, a blank line between sentences.

Reads CoNLL-2003 (``token pos chunk ner``), two-column files such as WNUT-17 and WikiANN
(``token tag``), and writes the ``token gold pred`` files that conlleval.pl scores.

The reader is strict: every problem is a :class:`~data.errors.DataFormatError` naming the file
and line, and nothing is skipped without being counted in :class:`ConllStats`.
``-DOCSTART-`` lines mark documents and are never part of a sentence.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from data.errors import DataFormatError, DataUsageError
from data.tags import (
    TagSchemeError,
    check_tags_in_scheme,
    convert,
    detect_scheme,
    extract_spans,
    invalid_transitions,
    normalize_scheme,
)
from data.text import read_lines
from data.warnings import CONTROL_CHARACTERS, Finding, brief_list, control_character_finding, describe_control, report

CONLL2003_COLUMNS: tuple[str, ...] = ("token", "pos", "chunk", "ner")
DOCSTART = "-DOCSTART-"
TOKEN_COLUMN = "token"

_SPACES = re.compile(r"[ \t]+")
# What a line is stripped of at both ends in the automatic separator mode; deliberately
# ASCII only, so that a no-break space inside a token stays part of it.
_ASCII_BLANKS = " \t"


@dataclass
class Sentence:
    """One sentence; token ``i`` sits on file line ``line + i``."""

    tokens: list[str]
    columns: dict[str, list[str]]
    line: int
    doc_id: int

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class ConllStats:
    """What was read, so that nothing disappears unnoticed."""

    documents: int = 0
    sentences: int = 0
    tokens: int = 0
    entities: dict[str, int] = field(default_factory=dict)
    # Tag bigrams that the file's own scheme forbids (e.g. ``O B-PER`` in IOB1); kept, counted.
    invalid_transitions: int = 0

    @property
    def entity_count(self) -> int:
        return sum(self.entities.values())

    def summary(self) -> str:
        return f"{self.documents} documents, {self.sentences} sentences, {self.tokens} tokens"


@dataclass
class ConllDataset:
    """Sentences of one file, the scheme the file was written in, and counts."""

    path: str
    sentences: list[Sentence]
    stats: ConllStats
    scheme: str
    tag_column: str
    # Scheme of the tags held in ``sentences`` (``target_scheme`` when one was asked for).
    output_scheme: str

    def summary(self) -> str:
        return self.stats.summary()

    def tokens(self) -> list[list[str]]:
        return [sentence.tokens for sentence in self.sentences]

    def tags(self) -> list[list[str]]:
        return [sentence.columns[self.tag_column] for sentence in self.sentences]

    def __len__(self) -> int:
        return len(self.sentences)


# --------------------------------------------------------------------------- reading


def read_conll(
    path: str | Path,
    columns: Sequence[str] | int = CONLL2003_COLUMNS,
    tag_column: str = "ner",
    scheme: str = "auto",
    target_scheme: str | None = None,
    sep: str | None = None,
    labels: Collection[str] | None = None,
) -> ConllDataset:
    """Read a CoNLL column file.

    ``columns`` names the columns in order; the first one holds the token. An integer ``n``
    names them ``token, col1, ..., col{n-2}`` and gives the last one the name ``tag_column``
    (``columns=2`` reads WNUT-17 / WikiANN). ``sep=None`` splits on tabs when the first data
    line has one and on runs of spaces otherwise; any other value is used verbatim.
    ``scheme="auto"`` detects the tag scheme from the whole file; every tag must then belong
    to it. ``labels``, when given, is the closed set of tags the file may use (in the file's
    scheme). ``target_scheme`` converts the tags after all checks.
    """
    path = Path(path)
    names = _column_names(columns, tag_column)
    lines = _read_lines(path)
    sentences, documents = _parse_sentences(path, lines, names, sep, labels, tag_column)
    if not sentences:
        raise DataFormatError(path, None, "no sentences found (expected token lines separated by blank lines)")
    file_scheme = _resolve_scheme(path, sentences, tag_column, scheme)
    stats = _collect_stats(path, sentences, documents, tag_column, file_scheme)
    output_scheme = file_scheme
    if target_scheme is not None:
        output_scheme = normalize_scheme(target_scheme)
        _convert_tags(sentences, tag_column, file_scheme, output_scheme)
    return ConllDataset(
        path=str(path),
        sentences=sentences,
        stats=stats,
        scheme=file_scheme,
        tag_column=tag_column,
        output_scheme=output_scheme,
    )


_CHUNK_TAG = re.compile(r"O|[BIESLU]-\S+")


def looks_like_conll(path: str | Path, sample: int = 200) -> bool:
    """Whether a file is CoNLL columns, by its structure and never by a word count: a ``-DOCSTART-``
    line, or at least two token lines (of the first ``sample``) that all have the same number of
    columns (two or more; tabs, else runs of spaces) and a chunk tag in the last (``O``, ``B-PER``,
    ``I-ORG``, ``S-LOC`` ...). One line of plain text ("I got an O") is not enough, and a second
    line of text would have to have the same number of words and end in a tag too."""
    columns, rows = None, 0
    for _, line in read_lines(path):
        if not line.strip(_ASCII_BLANKS):
            continue
        if _is_docstart(line):
            return True
        stripped = line.strip(_ASCII_BLANKS)
        fields = [f.strip(_ASCII_BLANKS) for f in stripped.split("\t")] if "\t" in stripped else stripped.split()
        if len(fields) < 2 or not _CHUNK_TAG.fullmatch(fields[-1]) or columns not in (None, len(fields)):
            return False
        columns, rows = len(fields), rows + 1
        if rows >= sample:
            break
    return rows >= 2


def read_conll_tokens(path: str | Path) -> list[list[str]]:
    """The tokens (first column) of every sentence of a CoNLL file, whatever its other columns;
    ``-DOCSTART-`` lines are skipped. For ``embed --format conll``."""
    path = Path(path)
    sentences: list[list[str]] = []
    current: list[str] = []
    sep: str | None = None
    controls = control_character_finding(path)
    for number, line in read_lines(path):
        if not line.strip(_ASCII_BLANKS) or _is_docstart(line):
            if current:
                sentences.append(current)
                current = []
            continue
        if sep is None:
            sep = "\t" if "\t" in line.strip(_ASCII_BLANKS) else " "
        token = _split_fields(line, None if sep == " " else sep)[0].strip(_ASCII_BLANKS)
        if not token or token.isspace():
            raise DataFormatError(path, number, f"empty token in the first column: {line[:80]!r}")
        control = CONTROL_CHARACTERS.search(token)
        if control is not None:
            controls.add(number, describe_control(token, control))
        current.append(token)
    if current:
        sentences.append(current)
    report(controls)
    if not sentences:
        raise DataFormatError(path, None, "no sentences found (expected token lines separated by blank lines)")
    return sentences


def _column_names(columns: Sequence[str] | int, tag_column: str) -> tuple[str, ...]:
    if isinstance(columns, int):
        if columns < 2:
            raise DataUsageError(f"a CoNLL file needs at least 2 columns (token, tag), got {columns}")
        return (TOKEN_COLUMN, *(f"col{i}" for i in range(1, columns - 1)), tag_column)
    names = tuple(columns)
    if len(names) < 2 or len(set(names)) != len(names):
        raise DataUsageError(f"expected at least 2 distinct column names, got {names}")
    if tag_column not in names:
        raise DataUsageError(f"tag_column {tag_column!r} is not one of the columns {names}")
    return names


def _read_lines(path: Path) -> list[str]:
    # data.text.read_lines: strict UTF-8 (errors name FILE:LINE and the column), BOM dropped,
    # lines split at "\n" only (str.splitlines() also breaks on \x1c, \x85, \u2028... which can
    # occur inside tokens and would shift every line number after them), "\r\n" accepted.
    lines = [line for _, line in read_lines(path)]
    if not lines:
        raise DataFormatError(path, None, "file is empty (expected CoNLL token lines)")
    return lines


def _is_docstart(line: str) -> bool:
    if DOCSTART not in line:  # cheap test first: this runs on every line
        return False
    stripped = line.lstrip(_ASCII_BLANKS)
    if not stripped.startswith(DOCSTART):
        return False
    rest = stripped[len(DOCSTART) :]
    return not rest or rest[0] in _ASCII_BLANKS


def _split_fields(line: str, sep: str | None) -> list[str]:
    if sep is not None:
        return line.split(sep)
    stripped = line.strip(_ASCII_BLANKS)
    if "\t" in stripped or "  " in stripped:
        return _SPACES.split(stripped)
    return stripped.split(" ")  # the common case, several times faster than the regex


def _describe_sep(sep: str | None) -> str:
    return {None: "spaces", "\t": "tabs", " ": "single spaces"}.get(sep, repr(sep))


def _parse_sentences(
    path: Path,
    lines: list[str],
    names: tuple[str, ...],
    sep: str | None,
    labels: Collection[str] | None,
    tag_column: str,
) -> tuple[list[Sentence], int]:
    """Group lines into sentences; returns them and the number of documents."""
    tag_index = names.index(tag_column)
    sep_decided = sep is not None
    sentences: list[Sentence] = []
    rows: list[list[str]] = []
    first_line = 0
    doc_id = -1  # no document yet: the first sentence opens an implicit one
    controls = control_character_finding(path)

    def close_sentence() -> None:
        nonlocal rows, doc_id
        if rows:
            doc_id = max(doc_id, 0)
            sentences.append(_make_sentence(rows, names, first_line, doc_id))
            rows = []

    for number, line in enumerate(lines, start=1):
        if not line.strip(_ASCII_BLANKS):
            close_sentence()
            continue
        if _is_docstart(line):
            close_sentence()
            doc_id += 1
            continue
        if not sep_decided:
            # The first token line decides, so that a tab file may hold spaces inside tokens.
            sep = "\t" if "\t" in line.strip(_ASCII_BLANKS) else None
            sep_decided = True
        fields = _split_fields(line, sep)
        if len(fields) != len(names):
            raise DataFormatError(
                path,
                number,
                f"expected {len(names)} columns ({' '.join(names)}) separated by "
                f"{_describe_sep(sep)}, found {len(fields)}: {line[:80]!r}",
            )
        if not fields[0].strip(_ASCII_BLANKS):
            raise DataFormatError(path, number, f"empty token in the first column: {line[:80]!r}")
        control = CONTROL_CHARACTERS.search(fields[0])
        if control is not None:
            controls.add(number, describe_control(fields[0], control))
        if labels is not None and fields[tag_index] not in labels:
            raise DataFormatError(
                path,
                number,
                f"unknown tag {fields[tag_index]!r} in column {tag_column!r} "
                f"(expected one of: {brief_list(sorted(labels), limit=20)})",
            )
        if not rows:
            first_line = number
        rows.append(fields)
    close_sentence()
    report(controls)
    return sentences, doc_id + 1


def _make_sentence(rows: list[list[str]], names: tuple[str, ...], first_line: int, doc_id: int) -> Sentence:
    columns = {name: [row[i] for row in rows] for i, name in enumerate(names)}
    return Sentence(tokens=columns[names[0]], columns=columns, line=first_line, doc_id=doc_id)


def _resolve_scheme(path: Path, sentences: list[Sentence], tag_column: str, scheme: str) -> str:
    all_tags = [sentence.columns[tag_column] for sentence in sentences]
    resolved = detect_scheme(all_tags) if scheme == "auto" else normalize_scheme(scheme)
    how = "detected" if scheme == "auto" else "declared"
    for sentence, tags in zip(sentences, all_tags):
        try:
            check_tags_in_scheme(tags, resolved)
        except TagSchemeError as error:
            raise DataFormatError(
                path,
                sentence.line + error.index,
                f"tag {error.tag!r} does not belong to the file's {how} scheme {resolved}: {error.reason}",
            ) from None
    return resolved


def _collect_stats(path: Path, sentences: list[Sentence], documents: int, tag_column: str, scheme: str) -> ConllStats:
    """Counts of the file; tag transitions its scheme forbids are kept and reported as one
    counted warning (:mod:`data.warnings`)."""
    entities: Counter[str] = Counter()
    illegal = Finding(
        "illegal-transition",
        str(path),
        f"illegal tag transition ({scheme})",
        f"illegal tag transitions ({scheme})",
        hint="the tags are read as conlleval reads them",
    )
    for sentence in sentences:
        tags = sentence.columns[tag_column]
        entities.update(span.type for span in extract_spans(tags))
        for index, prev, cur in invalid_transitions(tags, scheme):
            line = sentence.line + min(index, len(tags) - 1)
            if cur is None:
                illegal.add(line, f"{prev} at the end of a sentence")
            else:
                illegal.add(line, f"{cur} after {prev if prev is not None else 'the sentence start'}")
    report(illegal)
    return ConllStats(
        documents=documents,
        sentences=len(sentences),
        tokens=sum(len(sentence) for sentence in sentences),
        entities=dict(sorted(entities.items())),
        invalid_transitions=illegal.count,
    )


def _convert_tags(sentences: list[Sentence], tag_column: str, source: str, target: str) -> None:
    for sentence in sentences:
        sentence.columns[tag_column] = convert(sentence.columns[tag_column], source, target)


# --------------------------------------------------------------------------- writing


def format_conll_predictions(
    sentences_tokens: Sequence[Sequence[str]],
    gold_tags: Sequence[Sequence[str]],
    pred_tags: Sequence[Sequence[str]],
) -> str:
    """``token gold pred`` lines, a blank line after each sentence (conlleval's input). Callers
    write it with :func:`elmo_core.io.atomic_write_text` (readers stay free of the backbone)."""
    _check_parallel(sentences_tokens, gold_tags, pred_tags)
    lines: list[str] = []
    for index, (tokens, gold, pred) in enumerate(zip(sentences_tokens, gold_tags, pred_tags)):
        for token, gold_tag, pred_tag in zip(tokens, gold, pred):
            _check_single_field(token, "token", index)
            _check_single_field(gold_tag, "gold tag", index)
            _check_single_field(pred_tag, "predicted tag", index)
            lines.append(f"{token} {gold_tag} {pred_tag}\n")
        lines.append("\n")
    return "".join(lines)


def _check_parallel(
    tokens: Sequence[Sequence[str]], gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]
) -> None:
    if not len(tokens) == len(gold) == len(pred):
        raise DataUsageError(
            f"expected as many sentences of gold and predicted tags as of tokens, got "
            f"{len(tokens)} / {len(gold)} / {len(pred)}"
        )
    for index, (words, gold_tags, pred_tags) in enumerate(zip(tokens, gold, pred)):
        if not len(words) == len(gold_tags) == len(pred_tags):
            raise DataUsageError(
                f"sentence {index}: {len(words)} tokens but {len(gold_tags)} gold and {len(pred_tags)} predicted tags"
            )


def _check_single_field(value: str, what: str, sentence_index: int) -> None:
    # conlleval splits lines on spaces: a blank inside a field would shift the columns.
    if not value or value.split() != [value]:
        raise DataUsageError(f"sentence {sentence_index}: {what} {value!r} is empty or contains whitespace")
