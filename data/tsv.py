"""Delimited text-classification files (one example a line: text and label), read with pandas.

Columns are picked by header name or by 0-based index, or found by their header names (GLUE's
``sentence<TAB>label`` and ``label<TAB>sentence`` alike). Quotes are not special (GLUE's
SST-2 files contain bare ``"``), so every physical line is one row and every example keeps
the line it came from. Blank lines are ignored; everything else that is not a usable example
raises a :class:`~data.errors.DataFormatError` naming the file and line.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from data.errors import DataFormatError, DataUsageError
from data.text import read_lines
from data.warnings import (
    CONTROL_CHARACTERS,
    Finding,
    brief_list,
    control_character_finding,
    describe_control,
    report,
    shorten,
)

if TYPE_CHECKING:
    import pandas as pd

# What bytes.strip() strips: a file of nothing else is empty.
_ASCII_WHITESPACE = " \t\n\r\x0b\x0c"


class TextExample(NamedTuple):
    """One example: whitespace tokens of the text, the label, and its 1-based file line."""

    tokens: list[str]
    label: str
    line: int


# Header names that say what a column holds (compared case-insensitively), e.g. GLUE's
# ``sentence<TAB>label`` (train/dev), ``index<TAB>sentence`` (test, no labels).
TEXT_COLUMN_NAMES = ("sentence", "text", "review", "phrase", "document", "content", "comment", "tweet", "body")
LABEL_COLUMN_NAMES = ("label", "labels", "sentiment", "polarity", "class", "category", "target", "gold_label", "gold")
OTHER_COLUMN_NAMES = ("index", "idx", "id", "guid", "sentence_index", "phrase_id", "sentence_id")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ .-]{0,39}")


def read_tsv(
    path: str | Path,
    text_column: str | int | None = None,
    label_column: str | int | None = None,
    header: bool | str = "auto",
    sep: str = "\t",
    max_labels: int | None = None,
) -> list[TextExample]:
    """Read ``(tokens, label, line)`` examples from a delimited file.

    Columns are a header name or a 0-based index; ``None`` takes the header's text column
    (:data:`TEXT_COLUMN_NAMES`) and label column (:data:`LABEL_COLUMN_NAMES`), or without a
    header columns 0 (text) and 1 (label). ``header="auto"`` takes the first line for a header
    when it holds a column name asked for, or when its cells are names and one of them is a known
    one (``sentence``, ``label`` ...); when the only evidence is that its label occurs nowhere else
    in a column whose labels repeat, it is still taken for a header but reported (a counted
    warning, :mod:`data.warnings`; an error under ``--strict``).
    ``max_labels``: the task's number of classes; a file with more distinct labels is refused
    with a message that says which column looks like the text and which like the labels.
    Control characters inside the text are reported as counted warnings.
    """
    if header not in (True, False, "auto"):
        raise DataUsageError(f"header must be True, False or 'auto', not {header!r}")
    path = Path(path)
    text = _decode_utf8(path)
    rows = _read_rows(path, text, sep)
    has_header = _has_header(path, rows, text_column, label_column, header)
    names = [cell.strip() for cell in rows.iloc[0]] if has_header else []
    text_index, label_index = _resolve_columns(path, text_column, label_column, names, rows.shape[1])
    field_counts = [line.count(sep) + 1 for line in text.split("\n")]
    first_row = 1 if has_header else 0
    examples = []
    controls = control_character_finding(path, "text with a control character")
    controls.what_plural = "texts with control characters"
    for row_number in range(first_row, len(rows)):
        line = row_number + 1
        values = rows.iloc[row_number]
        if all(not str(value).strip() for value in values) and field_counts[row_number] == 1:
            continue  # a blank line
        examples.append(_make_example(path, line, values, text_index, label_index, field_counts[row_number]))
        control = CONTROL_CHARACTERS.search(str(values.iloc[text_index]))
        if control is not None:
            controls.add(line, describe_control(str(values.iloc[text_index]), control))
    if not examples:
        raise DataFormatError(path, None, "no examples found (expected lines of text and label)")
    if max_labels is not None:
        _check_label_count(path, rows.iloc[first_row:], names, examples, text_index, label_index, max_labels)
    report(controls)
    return examples


def _decode_utf8(path: Path) -> str:
    """The file's text, lines joined by "\n" ("\r\n" read as "\n", no final newline), read by
    :func:`data.text.read_lines` (strict UTF-8, errors name FILE:LINE, BOM dropped)."""
    text = "\n".join(line for _, line in read_lines(path))
    if not text.strip(_ASCII_WHITESPACE):
        raise DataFormatError(path, None, "file is empty (expected lines of text and label)")
    return text


def _read_rows(path: Path, text: str, sep: str) -> pd.DataFrame:
    import pandas as pd  # on first use: every command, --help included, would pay for importing it

    try:
        return pd.read_csv(
            io.StringIO(text),
            sep=sep,
            header=None,
            dtype=str,
            keep_default_na=False,  # "NA", "null", "nan" are text here, not missing values
            quoting=csv.QUOTE_NONE,
            skip_blank_lines=False,  # keeps row i on line i + 1
            lineterminator="\n",
        )
    except pd.errors.ParserError as error:
        match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
        if match is None:
            raise DataFormatError(path, None, f"cannot parse the file: {error}") from None
        expected, line, found = (int(group) for group in match.groups())
        raise DataFormatError(path, line, f"expected {expected} columns separated by {sep!r}, found {found}") from None


def _has_header(
    path: Path, rows: pd.DataFrame, text_column: str | int | None, label_column: str | int | None, header: bool | str
) -> bool:
    if header != "auto":
        return bool(header)
    first = [cell.strip() for cell in rows.iloc[0]]
    wanted = [column for column in (text_column, label_column) if isinstance(column, str)]
    if any(column in first for column in wanted):
        return True  # a name asked for that is missing is then reported against this header
    label_index = _guess_label_index(first, label_column)
    later = [label.strip() for label in rows.iloc[1:, label_index] if label.strip()] if label_index is not None else []
    if _names_a_header(first) and (label_index is None or first[label_index] not in later):
        return True
    if wanted or label_index is None or len(rows) < 3 or not later:
        return False
    if len(set(later)) < len(later) and first[label_index] not in later:
        guessed = Finding(
            "guessed-header",
            str(path),
            "first line taken for a header by a guess",
            hint="set data.header: false if line 1 is an example (true to say it is a header)",
        )
        guessed.add(1, f"its label {shorten(first[label_index], 40)!r} occurs nowhere else in column {label_index}")
        report(guessed)
        return True
    return False


def _guess_label_index(first: list[str], label_column: str | int | None) -> int | None:
    if isinstance(label_column, int):
        return label_column if 0 <= label_column < len(first) else None
    if isinstance(label_column, str):
        return None
    named = _find_name(first, LABEL_COLUMN_NAMES)
    if named is not None:
        return named
    return 1 if len(first) > 1 else None


def _names_a_header(first: list[str]) -> bool:
    """Every cell is a short name and one of them says what its column holds."""
    known = {*TEXT_COLUMN_NAMES, *LABEL_COLUMN_NAMES, *OTHER_COLUMN_NAMES}
    return all(_NAME.fullmatch(cell) for cell in first) and any(cell.lower() in known for cell in first)


def _find_name(names: list[str], wanted: tuple[str, ...]) -> int | None:
    lowered = [name.lower() for name in names]
    for name in wanted:
        if name in lowered:
            return lowered.index(name)
    return None


def _resolve_columns(
    path: Path, text_column: str | int | None, label_column: str | int | None, names: list[str], width: int
) -> tuple[int, int]:
    text_index = None if text_column is None else _column_index(path, text_column, names, width)
    label_index = None if label_column is None else _column_index(path, label_column, names, width)
    if text_index is None and names:
        text_index = _find_name(names, TEXT_COLUMN_NAMES)
    if label_index is None and names:
        label_index = _find_name(names, LABEL_COLUMN_NAMES)
    if names and (text_index is None or label_index is None) and width == 2:
        # Two columns, one of them named: the other one is the rest.
        if text_index is None and label_index is not None:
            text_index = 1 - label_index
        elif label_index is None and text_index is not None and names[1 - text_index].lower() not in OTHER_COLUMN_NAMES:
            label_index = 1 - text_index
    if not names or not _names_a_header(names):  # no header, or one whose names say nothing: 0 and 1
        text_index = text_index if text_index is not None else (1 if label_index == 0 else 0)
        label_index = label_index if label_index is not None else (0 if text_index == 1 else 1)
    shown = ", ".join(repr(shorten(name, 30)) for name in names[:12])
    if text_index is None:
        raise DataFormatError(
            path,
            1,
            f"cannot tell which column holds the text: the header names {shown} (expected one of "
            f"{', '.join(TEXT_COLUMN_NAMES[:4])} ...); set data.text_column to a name or a 0-based index",
        )
    if label_index is None:
        raise DataFormatError(
            path,
            1,
            f"no label column: the header names {shown} (expected one of {', '.join(LABEL_COLUMN_NAMES[:5])} ...); "
            "a file without labels (such as GLUE's test.tsv) cannot be trained or evaluated on. "
            "Otherwise set data.label_column to a name or a 0-based index",
        )
    if text_index == label_index:
        raise DataFormatError(path, 1, f"the text and the label are both column {text_index}; set data.text_column")
    if not 0 <= label_index < width or not 0 <= text_index < width:
        raise DataFormatError(path, 1, f"column index out of range (the file has {width} columns)")
    return text_index, label_index


def _column_index(path: Path, column: str | int, names: list[str], width: int) -> int:
    if isinstance(column, int):
        if not 0 <= column < width:
            raise DataFormatError(path, 1, f"column index {column} is out of range (the file has {width} columns)")
        return column
    shown = ", ".join(repr(shorten(name, 30)) for name in names[:12]) + (" ..." if len(names) > 12 else "")
    if not names:
        raise DataFormatError(
            path,
            1,
            f"column {column!r} asked for by name, but line 1 is not a header naming it "
            "(set data.header: true if it is one, or give the column's 0-based index)",
        )
    if column not in names:
        raise DataFormatError(path, 1, f"no column named {column!r} in the header (it names {shown})")
    return names.index(column)


def _check_label_count(
    path: Path,
    rows: pd.DataFrame,
    names: list[str],
    examples: list[TextExample],
    text_index: int,
    label_index: int,
    max_labels: int,
) -> None:
    """More distinct labels than the task has classes: say which column looks like the text."""
    labels = list(dict.fromkeys(example.label for example in examples))
    if len(labels) <= max_labels:
        return

    def describe(index: int) -> str:
        return f"{index} ({names[index]!r})" if names else str(index)

    words = {i: float(rows.iloc[:, i].str.split().str.len().fillna(0).mean()) for i in range(rows.shape[1])}
    distinct = {i: rows.iloc[:, i].str.strip().nunique() for i in range(rows.shape[1])}
    message = (
        f"{len(labels):,} distinct labels in column {describe(label_index)} (such as {brief_list(labels, limit=3)}), "
        f"but the task has {max_labels} classes"
    )
    text_like = max(words, key=lambda i: words[i])
    label_like = [
        i for i in sorted(distinct, key=lambda i: distinct[i]) if i != text_like and distinct[i] <= max_labels
    ]
    if text_like != text_index:
        message += f"; column {describe(text_like)} looks like the text ({words[text_like]:.1f} words a line)"
        if label_like:
            message += (
                f" and column {describe(label_like[0])} like the labels ({distinct[label_like[0]]} distinct values)"
            )
    raise DataFormatError(
        path, None, message + ": set data.text_column and data.label_column (a header name or a 0-based index)"
    )


def _make_example(
    path: Path, line: int, values: pd.Series, text_index: int, label_index: int, fields: int
) -> TextExample:
    needed = max(text_index, label_index) + 1
    if fields < needed:
        raise DataFormatError(
            path, line, f"missing label: expected at least {needed} columns (text and label), found {fields}"
        )
    tokens = str(values.iloc[text_index]).split()
    if not tokens:
        raise DataFormatError(path, line, f"empty text in column {text_index} (expected words)")
    label = str(values.iloc[label_index]).strip()
    if not label:
        raise DataFormatError(path, line, f"missing label in column {label_index}")
    return TextExample(tokens=tokens, label=label, line=line)
