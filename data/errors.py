"""Errors raised by the dataset readers: always name the file, the line and what was expected."""
from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
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
