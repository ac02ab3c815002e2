"""One way to read a text file line by line: strict UTF-8, 1-based line numbers, errors that name
``FILE:LINE``.

``read_lines(path)`` yields ``(line number, text)``. Lines end at ``\\n`` only (not at the other
characters ``str.splitlines`` breaks on, such as ``\\x85`` or ``\\u2028``, which can occur inside
tokens and would shift every line number after them); a ``\\r`` before the ``\\n`` (or at the end
of the last line) is removed, and so is a UTF-8 byte-order mark at the start of the file. Files
ending in ``.gz``, ``.xz`` or ``.bz2`` are decompressed on the fly. The file is read in blocks of
whole lines, so a multi-gigabyte corpus is never loaded at once.

``read_text(path)`` gives the whole file as one string, line ends kept, for readers that need
character offsets into it (raw text for the tokeniser, data/tokenize.py).

Every problem is a :class:`~data.errors.DataFormatError`: a missing file, a directory, bytes that
are not UTF-8 (``FILE:LINE: not valid UTF-8: byte 0xfc at column 5 (the file must be UTF-8)``),
or a damaged compressed file.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from data.errors import DataFormatError

UTF8_BOM = b"\xef\xbb\xbf"
COMPRESSED_SUFFIXES = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}
_BLOCK_BYTES = 1 << 20


def check_readable_file(path: str | Path) -> Path:
    """``path`` as a Path, or a :class:`DataFormatError` if it is missing or not a regular file."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, None, "file not found")
    if path.is_dir():
        raise DataFormatError(path, None, "is a directory (expected a text file)")
    return path


def open_binary(path: str | Path) -> BinaryIO:
    """The file's bytes, decompressed when its name ends in ``.gz``, ``.xz`` or ``.bz2``."""
    path = check_readable_file(path)
    opener = COMPRESSED_SUFFIXES.get(path.suffix)
    return opener(path, "rb") if opener is not None else path.open("rb")


def read_lines(path: str | Path, block_bytes: int = _BLOCK_BYTES) -> Iterator[tuple[int, str]]:
    """``(1-based line number, line)`` for every line of a UTF-8 text file, without line ends.

    The file is checked at once (missing file or directory: :class:`DataFormatError`); decoding
    errors are raised while iterating, naming the line and the byte's column.
    """
    path = check_readable_file(path)
    return _lines(path, block_bytes)


def _lines(path: Path, block_bytes: int) -> Iterator[tuple[int, str]]:
    number = 0
    try:
        with open_binary(path) as handle:
            for number, line in decoded_lines(handle, path, block_bytes):
                yield number, line
    except (EOFError, lzma.LZMAError, zlib.error, gzip.BadGzipFile) as error:
        raise DataFormatError(path, number + 1, f"cannot decompress the file, it looks damaged ({error})") from None
    except OSError as error:
        if isinstance(error, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise DataFormatError(path, None, f"cannot read the file ({error.strerror or error})") from None
        # bz2 reports a damaged stream as a bare OSError ("Invalid data stream").
        raise DataFormatError(path, number + 1, f"cannot read the file, it looks damaged ({error})") from None


def decoded_lines(handle: BinaryIO, source: str | Path, block_bytes: int = _BLOCK_BYTES) -> Iterator[tuple[int, str]]:
    """``(1-based line number, line)`` of an open binary stream, by the rules of :func:`read_lines`
    (strict UTF-8 naming ``source:LINE``, ``\\n`` line ends, a leading BOM and trailing ``\\r``
    dropped). Damaged-stream errors are left to the caller, which knows what the stream is."""
    number = 0
    first = True
    while True:
        block = handle.readlines(block_bytes)  # whole lines: a character never straddles blocks
        if not block:
            return
        data = b"".join(block)
        if first:
            first = False
            if data.startswith(UTF8_BOM):
                data = data[len(UTF8_BOM) :]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise _decode_error(source, number, data, error) from None
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()  # the block's final newline does not open another line
        for line in lines:
            number += 1
            yield number, line[:-1] if line.endswith("\r") else line


def read_text(path: str | Path) -> str:
    """The whole file as one string, exactly as written (line ends kept; a leading byte-order mark
    dropped), for readers that need character offsets into it. Same errors as :func:`read_lines`,
    and a NUL character is one too (``FILE:LINE: NUL character at column N``): text never holds
    it, a binary or UTF-16 file does."""
    path = check_readable_file(path)
    try:
        with open_binary(path) as handle:
            data = handle.read()
    except (EOFError, lzma.LZMAError, zlib.error, gzip.BadGzipFile) as error:
        raise DataFormatError(path, None, f"cannot decompress the file, it looks damaged ({error})") from None
    except OSError as error:
        if isinstance(error, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise DataFormatError(path, None, f"cannot read the file ({error.strerror or error})") from None
        raise DataFormatError(path, None, f"cannot read the file, it looks damaged ({error})") from None
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _decode_error(path, 0, data, error) from None
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        column = nul - (text.rfind("\n", 0, nul) + 1) + 1
        raise DataFormatError(
            path, line, f"NUL character at column {column}: a binary file, or UTF-16 text? (the file must be UTF-8)"
        )
    return text


def _decode_error(path: str | Path, lines_before: int, data: bytes, error: UnicodeDecodeError) -> DataFormatError:
    line = lines_before + data.count(b"\n", 0, error.start) + 1
    column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
    return DataFormatError(
        path, line, f"not valid UTF-8: byte 0x{data[error.start]:02x} at column {column} (the file must be UTF-8)"
    )
