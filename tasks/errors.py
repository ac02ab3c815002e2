"""The errors of the task layer: one root, :class:`TasksError`, for everything a user can cause
(a bad config, a bad command line, a run directory that does not fit). The CLI catches it, the
readers' :class:`~data.errors.DataError` and the backbone's :class:`~elmo_core.errors.BackboneError`,
and nothing else: any other exception is a bug and keeps its traceback."""

from __future__ import annotations

from pathlib import Path


class TasksError(ValueError):
    """Root of the task layer's user errors."""


class UsageError(TasksError):
    """A command-line argument or API call that cannot work (``--jobs 0``, an unknown mix name)."""


class RunDirError(TasksError):
    """A run directory is missing a file, holds a damaged one, or was made with another config."""

    def __init__(self, path: str | Path, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")


class UncheckedBackboneWarning(UserWarning):
    """A run directory written before runs recorded their backbone's sha256: its backbone is used
    as configured, unchecked (see :func:`tasks.features.check_run_backbone`)."""


def brief(err: BaseException, limit: int = 160) -> str:
    """``Type: first sentence`` of a library's exception, for a one-line message (torch's are long)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = text.split(". ")[0].rstrip(".")
    return f"{type(err).__name__}: {text[:limit]}" if text else type(err).__name__


class PackageError(RunDirError):
    """A model package (``elmo-tasks package``) that cannot be read: not an archive, truncated, from a
    newer format, a member missing or altered, or a backbone that does not match. ``path`` names the
    archive, or ``ARCHIVE#MEMBER`` for one of its members."""
