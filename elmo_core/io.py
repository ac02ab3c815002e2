"""Crash-safe file writes, output-path checks, directory locks and file hashing, shared by
everything that writes files.

Every ``atomic_*`` writer writes a temporary file next to the target (``PATH.part`` unless told
otherwise), flushes and ``fsync``s it, ``os.replace``s it over the target and then ``fsync``s
the directory (best effort), so a reader, or a run restarted after ``kill -9``, sees either the
old file or the whole new one. If writing raises, the temporary file is removed and the old file
is left as it was; an ``OSError`` that names no file (a full disk: ``ENOSPC``) is raised again
naming the target, and a full disk is reported as ``ENOSPC`` even when the writer (``torch.save``)
hides it behind a ``RuntimeError``.

:func:`check_output_file` / :func:`check_output_dir` find an output that cannot be written (a
directory where a file is expected, a missing or read-only directory) before any work starts;
:func:`check_free_space` refuses to start a file that will not fit (HDF5 writers need it: h5py
crashes the process when it closes a file on a full disk).

:class:`FileLock` / :func:`directory_lock`: one process at a time in a directory (a run, a
pretraining run, a feature-store shard). An exclusive ``fcntl.flock`` on a lock file that holds
the holder's PID; the kernel releases it when the process dies, so a killed run never leaves a
stale lock. A second process waits (saying ``waiting for PID N which holds DIR/.lock``) or, when
asked not to wait (``wait=False``, or ``ELMO_TASKS_NO_WAIT=1`` when ``wait`` is not given), fails
at once with a :class:`~elmo_core.errors.DirectoryBusyError` naming the holder's PID.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import DirectoryBusyError, OutputPathError

PART_SUFFIX = ".part"
LOCK_NAME = ".lock"


def cache_dir() -> Path:
    """``$ELMO_TASKS_CACHE`` or ``~/.cache/elmo-tasks`` (downloaded models, compiled kernels)."""
    return Path(os.environ.get("ELMO_TASKS_CACHE", Path.home() / ".cache" / "elmo-tasks"))


NO_WAIT_ENV = "ELMO_TASKS_NO_WAIT"
# A write that failed while the filesystem had less than this left is reported as a full disk.
NEARLY_FULL_BYTES = 1 << 20


def temporary_path(path: str | Path, suffix: str = PART_SUFFIX) -> Path:
    """Where an atomic write of ``path`` puts its data first: ``PATH`` + ``suffix``."""
    path = Path(path)
    return path.with_name(path.name + suffix)


def fsync_file(path: str | Path) -> None:
    """Flush a closed file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(path: str | Path) -> None:
    """Make a rename in ``path`` durable; best effort (some filesystems refuse to fsync a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = PART_SUFFIX) -> Iterator[Path]:
    """Yield the temporary path to write ``path``'s new content to (for writers that need a file
    name, such as h5py or ``torch.save``); when the block ends without error the temporary file is
    fsynced and renamed over ``path``; when it raises, the temporary file is deleted."""
    path = Path(path)
    partial = temporary_path(path, suffix)
    try:
        yield partial
        fsync_file(partial)
        os.replace(partial, path)
    except BaseException as err:
        named = isinstance(err, OSError) and err.filename == str(path)  # e.g. check_free_space's
        full = not named and isinstance(err, (OSError, RuntimeError)) and _disk_full(err, path.parent)
        with contextlib.suppress(OSError):
            partial.unlink()
        if full:
            raise OSError(errno.ENOSPC, "No space left on device (the file was not written)", str(path)) from err
        if isinstance(err, OSError) and err.filename in (None, str(partial)) and err.errno is not None:
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err  # the target, not PATH.part
        raise
    fsync_directory(path.parent)


def _disk_full(err: BaseException, directory: Path) -> bool:
    """Did this write fail because the filesystem is full? ``ENOSPC`` / ``EDQUOT`` say so; writers
    that hide the errno (``torch.save``'s ``RuntimeError``, numpy's short writes) are judged by the
    space left, measured before their temporary file is removed."""
    if getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:
        return shutil.disk_usage(directory).free < NEARLY_FULL_BYTES
    except OSError:
        return False


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any], suffix: str = PART_SUFFIX) -> None:
    """Call ``write(handle)`` on a binary handle to the temporary file, then commit it as ``path``."""
    with atomic_path(path, suffix) as partial:
        with open(partial, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_bytes(path: str | Path, data: bytes, suffix: str = PART_SUFFIX) -> None:
    """Replace ``path`` with ``data``, atomically."""
    atomic_write(path, lambda handle: handle.write(data), suffix)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8", suffix: str = PART_SUFFIX) -> None:
    """Replace ``path`` with ``text`` (``\\n`` written as is), atomically."""
    atomic_write_bytes(path, text.encode(encoding), suffix)


def atomic_write_json(path: str | Path, value: Any, indent: int | None = 2, suffix: str = PART_SUFFIX) -> None:
    """Replace ``path`` with ``json.dumps(value, indent=indent)`` plus a trailing newline, atomically."""
    atomic_write_text(path, json.dumps(value, indent=indent) + "\n", suffix=suffix)


def atomic_torch_save(obj: Any, path: str | Path, suffix: str = PART_SUFFIX) -> None:
    """``torch.save`` to ``PATH.part``, fsync, then rename: a crash never leaves a half-written file."""
    import torch

    with atomic_path(path, suffix) as partial:
        torch.save(obj, partial)


def check_free_space(path: str | Path, needed: int) -> None:
    """An ``OSError(ENOSPC)`` naming ``path`` unless the filesystem that will hold it has ``needed``
    bytes free, plus :data:`NEARLY_FULL_BYTES` to spare. For writers that must never meet a full
    disk: HDF5 (h5py) crashes the whole process (segmentation fault) when it closes a file whose
    writes failed, so HDF5 files are only started when they fit."""
    directory = Path(path).parent
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return  # the write itself will say what is wrong
    if free < needed + NEARLY_FULL_BYTES:
        raise OSError(
            errno.ENOSPC,
            f"No space left on device (about {_size(needed)} needed, {_size(free)} free; the file was not written)",
            str(path),
        )


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n / 1024:.0f} KiB"


# ---------------------------------------------------------------- output paths, checked up front


def check_output_file(path: str | Path, what: str = "the output") -> Path:
    """``path`` as a Path, or an :class:`OutputPathError` if a file cannot be written there: it is a
    directory (or another non-regular file), or its directory is missing, not a directory or not
    writable. Nothing is created. ``what`` names the argument in messages (``--output``)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{path}: is a directory; {what} must name a file (e.g. {path / 'NAME'})")
    if path.exists() and not path.is_file():
        raise OutputPathError(f"{path}: exists and is not a regular file; {what} must name a file")
    parent = path.parent
    if not parent.exists():
        raise OutputPathError(f"{parent}: directory does not exist (for {what} {path}); create it first")
    if not parent.is_dir():
        raise OutputPathError(f"{parent}: not a directory, so {what} {path} cannot be written")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{parent}: directory not writable, so {what} {path} cannot be written")
    return path


def check_output_dir(path: str | Path, what: str = "the output directory") -> Path:
    """``path`` as a Path, or an :class:`OutputPathError` if it cannot be used as (or created as) a
    writable directory: it is a file, it is read-only, or the nearest existing folder above it is a
    file or read-only. Nothing is created."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise OutputPathError(f"{path}: not a directory; {what} must be a directory (or a path to create)")
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputPathError(f"{path}: directory not writable ({what})")
        return path
    ancestor = path.parent
    while not ancestor.exists() and not ancestor.is_symlink() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputPathError(f"{ancestor}: not a directory, so {what} {path} cannot be created")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(f"{ancestor}: directory not writable, so {what} {path} cannot be created")
    return path


# ---------------------------------------------------------------- one process per directory


def no_wait_requested() -> bool:
    """``ELMO_TASKS_NO_WAIT`` is set to something true (``1``, ``yes``, ``true``)."""
    return os.environ.get(NO_WAIT_ENV, "").strip().lower() in ("1", "yes", "true", "on")


def log_to_stderr(message: str) -> None:
    """The default ``log`` of the locks: one line on stderr."""
    print(message, file=sys.stderr, flush=True)


class FileLock:
    """An exclusive ``flock`` on the file ``path``, which holds the holder's PID while it is held.

    ``wait``: ``True`` waits for the holder (logging ``waiting for PID N which holds PATH`` once
    through ``log``, stderr by default), ``False`` raises :class:`DirectoryBusyError` naming the
    holder's PID at once, ``None`` waits unless ``ELMO_TASKS_NO_WAIT=1``. The lock is released by
    :meth:`release`, by leaving the ``with`` block, or by the kernel when the process dies. Two
    opens of the same file exclude each other, even in one process.
    """

    def __init__(self, path: str | Path, wait: bool | None = None, log: Callable[[str], Any] | None = log_to_stderr):
        self.path, self.wait, self.log = Path(path), wait, log
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> str:
        """``PID N`` of the process that wrote its PID into the lock file, or ``another process``."""
        with contextlib.suppress(OSError, ValueError):
            return f"PID {int(self.path.read_text(encoding='ascii').split()[0])}"
        return "another process"

    def acquire(self) -> FileLock:
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: this lock is already held by this object")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self.holder()
                wait = self.wait if self.wait is not None else not no_wait_requested()
                if not wait:
                    raise DirectoryBusyError(
                        f"{self.path}: held by {holder} (another elmo-tasks process is working in "
                        f"{self.path.parent}); not waiting (--no-wait / {NO_WAIT_ENV}=1): let it finish, "
                        "or use another directory"
                    ) from None
                if self.log is not None:
                    self.log(f"waiting for {holder} which holds {self.path}")
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # no stale PID for the next holder's waiters to read
        finally:
            os.close(fd)  # releases the flock

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def directory_lock(
    directory: str | Path, wait: bool | None = None, log: Callable[[str], Any] | None = log_to_stderr
) -> FileLock:
    """The lock of a whole directory, ``DIR/.lock`` (the directory is created on acquiring):
    ``with directory_lock(run_dir, wait, log): ...``; see :class:`FileLock`."""
    return FileLock(Path(directory) / LOCK_NAME, wait, log)


def update_hash(digest: Any, path: str | Path, chunk: int = 1 << 20) -> None:
    """Feed a file's bytes into ``digest`` (a ``hashlib`` object), ``chunk`` bytes at a time."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits (read ``chunk`` bytes at a time)."""
    digest = hashlib.sha256()
    update_hash(digest, path, chunk)
    return digest.hexdigest()
