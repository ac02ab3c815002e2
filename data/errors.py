"""Errors raised by the dataset readers: always name the file, the line and what was expected.

Every error the readers raise for bad user input is a :class:`DataError` (a ``ValueError``):

* :class:`DataFormatError`: a data file is missing, unreadable or not in the expected format
  (``FILE:LINE: problem``);
* :class:`DataUsageError`: an argument given to a reader or writer (usually from a config) is
  not valid;
* ``data.tags.TagSchemeError`` and ``data.wordnet.WordNetNotFoundError`` are DataErrors too.
"""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Root of every error the dataset readers raise for bad user input (files or arguments)."""


class DataFormatError(DataError):
    """A data file does not have the expected format.

    The message reads ``FILE:LINE: problem (expected ...)`` so editors and terminals can jump
    to the offending line.
    """

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        self.problem = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class DataUsageError(DataError):
    """An argument given to a reader or writer (usually from a config) is not valid."""
