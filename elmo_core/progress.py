"""Progress bars that show on a terminal and stay out of log files."""

from __future__ import annotations


def bar_disabled(progress: bool) -> bool | None:
    """tqdm's ``disable`` for a caller's ``progress`` flag: off when asked, and otherwise ``None``,
    which tqdm reads as "only when the output is a terminal" (a bar redrawn into a log file is
    thousands of lines of noise)."""
    return None if progress else True
