"""Delimited text-classification files (one example a line: text and label), read with pandas.

Columns are picked by header name or by 0-based index. Quotes are not special (GLUE's
SST-2 files contain bare ``"``), so every physical line is one row and every example keeps
the line it came from. Blank lines are ignored; everything else that is not a usable example
raises a :class:`~data.errors.DataFormatError` naming the file and line.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from data.errors import DataFormatError, DataUsageError
from data.text import read_lines

# What bytes.strip() strips: a file of nothing else is empty.
_ASCII_WHITESPACE = " \t\n\r\x0b\x0c"


class TextExample(NamedTuple):
    """One example: whitespace tokens of the text, the label, and its 1-based file line."""

    tokens: list[str]
    label: str
    line: int


def read_tsv(
    path: str | Path,
    text_column: str | int = 0,
    label_column: str | int = 1,
    header: bool | str = "auto",
    sep: str = "\t",
) -> list[TextExample]:
    """Read ``(tokens, label, line)`` examples from a delimited file.

    ``header="auto"`` takes the first line for a header when it holds the column names asked
    for, or (with integer columns) when its label appears nowhere else in a column whose
    labels repeat. Column names need a header.
    """
    if header not in (True, False, "auto"):
        raise DataUsageError(f"header must be True, False or 'auto', not {header!r}")
    path = Path(path)
    text = _decode_utf8(path)
    rows = _read_rows(path, text, sep)
    has_header = _has_header(rows, text_column, label_column, header)
    names = [cell.strip() for cell in rows.iloc[0]] if has_header else []
    text_index = _column_index(path, text_column, names, rows.shape[1])
    label_index = _column_index(path, label_column, names, rows.shape[1])
    field_counts = [line.count(sep) + 1 for line in text.split("\n")]
    first_row = 1 if has_header else 0
    examples = []
    for row_number in range(first_row, len(rows)):
        line = row_number + 1
        values = rows.iloc[row_number]
        if all(not str(value).strip() for value in values) and field_counts[row_number] == 1:
            continue  # a blank line
        examples.append(_make_example(path, line, values, text_index, label_index, field_counts[row_number]))
    if not examples:
        raise DataFormatError(path, None, "no examples found (expected lines of text and label)")
    return examples


def _decode_utf8(path: Path) -> str:
    """The file's text, lines joined by "\n" ("\r\n" read as "\n", no final newline), read by
    :func:`data.text.read_lines` (strict UTF-8, errors name FILE:LINE, BOM dropped)."""
    text = "\n".join(line for _, line in read_lines(path))
    if not text.strip(_ASCII_WHITESPACE):
        raise DataFormatError(path, None, "file is empty (expected lines of text and label)")
    return text


def _read_rows(path: Path, text: str, sep: str) -> pd.DataFrame:
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


def _has_header(rows: pd.DataFrame, text_column: str | int, label_column: str | int, header: bool | str) -> bool:
    if header != "auto":
        return bool(header)
    first = [cell.strip() for cell in rows.iloc[0]]
    wanted = [column for column in (text_column, label_column) if isinstance(column, str)]
    if wanted:
        return all(column in first for column in wanted)
    if not isinstance(label_column, int) or not 0 <= label_column < len(first) or len(rows) < 3:
        return False
    later_labels = [label.strip() for label in rows.iloc[1:, label_column] if label.strip()]
    labels_repeat = len(set(later_labels)) < len(later_labels)
    return labels_repeat and first[label_column] not in later_labels


def _column_index(path: Path, column: str | int, names: list[str], width: int) -> int:
    if isinstance(column, int):
        if not 0 <= column < width:
            raise DataFormatError(path, 1, f"column index {column} is out of range (the file has {width} columns)")
        return column
    if not names:
        raise DataFormatError(path, 1, f"column {column!r} asked for by name, but the file has no header line")
    if column not in names:
        raise DataFormatError(path, 1, f"no column named {column!r} in the header (expected one of {names})")
    return names.index(column)


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
