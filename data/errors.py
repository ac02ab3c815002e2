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
        super().__init__(capped(f"{where}: {message}"))


MAX_MESSAGE_LINES = 15
MAX_LINE_CHARS = 600


def capped(message: str) -> str:
    """A message that never runs past a few lines: at most :data:`MAX_MESSAGE_LINES` lines of at most
    :data:`MAX_LINE_CHARS` characters (a file's content must never flood the terminal)."""
    lines = message.split("\n")
    cut = [line if len(line) <= MAX_LINE_CHARS else line[: MAX_LINE_CHARS - 3] + "..." for line in lines]
    if len(cut) > MAX_MESSAGE_LINES:
        cut = cut[: MAX_MESSAGE_LINES - 1] + [f"  ... and {len(cut) - MAX_MESSAGE_LINES + 1} more lines"]
    return "\n".join(cut)


class DataUsageError(DataError):
    """An argument given to a reader or writer (usually from a config) is not valid."""
