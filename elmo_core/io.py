"""Crash-safe file writes and file hashing, shared by everything in the backbone that writes files.

Every ``atomic_*`` writer writes a temporary file next to the target (``PATH.part`` unless told
otherwise), flushes and ``fsync``s it, ``os.replace``s it over the target and then ``fsync``s
the directory (best effort), so a reader, or a run restarted after ``kill -9``, sees either the
old file or the whole new one. If writing raises, the temporary file is removed and the old file
is left as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

PART_SUFFIX = ".part"


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
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
    fsync_directory(path.parent)


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
