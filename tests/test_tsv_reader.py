"""Delimited text/label reader: columns by name or index, header detection, bad lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.errors import DataFormatError
from data.tsv import TextExample, read_tsv


def write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "data.tsv"
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def read_error(path: Path, **kwargs) -> DataFormatError:
    with pytest.raises(DataFormatError) as caught:
        read_tsv(path, **kwargs)
    return caught.value


def test_columns_by_name_with_header(tmp_path):
    path = write(tmp_path, "label\tsentence\n1\ta gripping , funny film\n0\tdull\n")
    examples = read_tsv(path, text_column="sentence", label_column="label")
    assert examples == [
        TextExample(["a", "gripping", ",", "funny", "film"], "1", 2),
        TextExample(["dull"], "0", 3),
    ]
    tokens, label, line = examples[0]
    assert (label, line) == ("1", 2)


def test_columns_by_index_without_header(tmp_path):
    path = write(tmp_path, "good movie\tpos\nbad movie\tneg\n")
    examples = read_tsv(path, text_column=0, label_column=1, header=False)
    assert [(e.tokens, e.label, e.line) for e in examples] == [
        (["good", "movie"], "pos", 1),
        (["bad", "movie"], "neg", 2),
    ]


def test_auto_header_with_integer_columns(tmp_path):
    with_header = write(tmp_path, "sentence\tlabel\nfine\t1\nawful\t0\nok\t1\n")
    assert [e.line for e in read_tsv(with_header)] == [2, 3, 4]
    without_header = write(tmp_path, "fine\t1\nawful\t0\nok\t1\n")
    assert [e.line for e in read_tsv(without_header)] == [1, 2, 3]


def test_quotes_and_na_words_are_plain_text(tmp_path):
    path = write(tmp_path, 'the "best" film\tNA\nnull\tnan\n')
    examples = read_tsv(path, header=False)
    assert examples[0] == TextExample(["the", '"best"', "film"], "NA", 1)
    assert examples[1] == TextExample(["null"], "nan", 2)


def test_blank_lines_are_skipped_but_line_numbers_stay_exact(tmp_path):
    path = write(tmp_path, "a\t1\n\nb\t0\n\n")
    assert [e.line for e in read_tsv(path, header=False)] == [1, 3]


def test_crlf_and_bom(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbfsentence\tlabel\r\nnice one\t1\r\n")
    assert read_tsv(path, text_column="sentence", label_column="label") == [
        TextExample(["nice", "one"], "1", 2),
    ]


def test_other_separator(tmp_path):
    path = write(tmp_path, "text,label\nhello there,greeting\n")
    assert read_tsv(path, text_column="text", label_column="label", sep=",")[0].label == "greeting"


def test_missing_label(tmp_path):
    error = read_error(write(tmp_path, "good\t1\nno label here\n"), header=False)
    assert error.line == 2
    assert "missing label" in str(error)


def test_empty_label_field(tmp_path):
    error = read_error(write(tmp_path, "good\t1\nfine\t \n"), header=False)
    assert error.line == 2
    assert "missing label" in str(error)


def test_empty_text(tmp_path):
    error = read_error(
        write(tmp_path, "sentence\tlabel\ngood\t1\n  \t0\n"), text_column="sentence", label_column="label"
    )
    assert error.line == 3
    assert "empty text" in str(error)


def test_too_many_columns(tmp_path):
    error = read_error(write(tmp_path, "good\t1\nx\t1\textra\n"), header=False)
    assert error.line == 2
    assert "expected 2 columns" in str(error) and "found 3" in str(error)


def test_non_utf8_bytes(tmp_path):
    error = read_error(write(tmp_path, b"good\t1\nbad \xe9t\xe9\t0\n"), header=False)
    assert error.line == 2
    assert "UTF-8" in str(error)


def test_empty_file(tmp_path):
    error = read_error(write(tmp_path, ""))
    assert "empty" in str(error)


def test_unknown_column_name(tmp_path):
    error = read_error(
        write(tmp_path, "text\tlabel\nhi\t1\n"), text_column="sentence", label_column="label", header=True
    )
    assert error.line == 1
    assert "'sentence'" in str(error)
