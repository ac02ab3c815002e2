"""An on-disk, memory-mapped store of all biLM layers, so task training reads ELMo features from
disk instead of running the backbone every epoch.

Shapes (``L`` = ``num_layers``, ``D`` = ``dim``, ``n`` = tokens of one sentence):

* ``store.get(tokens)`` -> ``(L, n, D)`` array (float16 by default, float32 on request), a
  read-only view into a memory-mapped chunk file.
* ``layers_for_batch(store, sentences)`` -> :class:`~elmo_core.bilm.BiLmOutput` with
  ``layers (L, batch, time, D)`` float32 (zero-padded) and ``mask (batch, time)`` bool: the same
  thing ``bilm(batch_to_ids(sentences))`` returns, read from disk.

An entry is keyed by a hash of (model identity, the sentence's tokens), so a changed model or a
changed sentence never returns stale vectors: it is simply not found.

Directory layout::

    store.json                  {"format", "model_id", "num_layers", "dim", "dtype"}
    chunks/r0-000001.npy        (tokens, L, D): the sentences of one chunk, back to back
    chunks/r0-000001.keys       its committed entries, one per line: key <TAB> first row <TAB> n
    index.tsv                   merged entries: key <TAB> chunk <TAB> first row <TAB> n
    locks/                      flock files (holder PID inside): one writer per shard, a second one
                                waits (or, asked not to wait, fails naming the PID); one compaction at a time

Crash safety (``kill -9`` at any point): a chunk is written to ``*.tmp``, fsynced and
``os.replace``d into place, and only then is its ``.keys`` file (also written to a temp name and
replaced) created; that rename is the commit. A reader only looks at ``.keys`` files and
``index.tsv``, so it never sees a half-written entry. A build that starts again deletes its shard's
leftovers (temp files, chunks without keys) and embeds only the batches not yet stored.
``compact_index`` folds the ``.keys`` files into ``index.tsv`` (rewritten atomically).
A writer commits when its chunk buffer is full *or* when ``commit_seconds`` (60 s by default) have
passed since its last commit, whichever comes first, so a ``kill -9`` loses at most about a minute of
work (plus the batch in flight) however slow the model is.

Determinism: the batch plan is made over all distinct sentences of the dataset, whatever is
already stored and whatever the number of shards, and batch ``i`` goes to shard ``i % world``; the
biLM's type cache is off while building, and so is the packing of a window's sentences into shared
LSTM rows (``row_packing.py``), so a sentence's vectors depend only on its batch. Hence a
resumed or sharded build is bitwise equal to a one-shot build with the same ``batch_tokens`` /
``max_batch``, device and thread count. Where the commits fall (by size, by time, or at a kill)
decides only which chunk file and row an entry lands in, never its key or its values: what a store
holds is the map key -> array, and that map is the same whatever the commit points were.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from .bilm import BiLmOutput, ElmoBiLm
from .embed import embed_windows, plan_embedding_batches
from .errors import BackboneUsageError, ElmoFileError
from .io import FileLock, atomic_write, log_to_stderr
from .progress import bar_disabled

FORMAT_VERSION = 1
DTYPES = ("float16", "float32")
DEFAULT_CHUNK_BYTES = 64 << 20
DEFAULT_COMMIT_SECONDS = 60.0  # a writer commits at least this often, so a kill -9 loses at most about this much work
_CHUNK_NAME = re.compile(r"^(?P<writer>r\d+)-(?P<seq>\d{6})\.npy$")


class FeatureStoreError(ElmoFileError):
    """A directory is not a feature store, holds another model's features, or is being written."""


class Entry(NamedTuple):
    """Where one sentence's vectors live: rows ``start : start + length`` of ``chunk``."""

    chunk: str
    start: int
    length: int


@dataclass(frozen=True)
class StoreInfo:
    """The contents of ``store.json``: every entry of a store has the same model, shape and dtype."""

    model_id: str
    num_layers: int
    dim: int
    dtype: str

    def to_json(self) -> str:
        return (
            json.dumps(
                {
                    "format": FORMAT_VERSION,
                    "model_id": self.model_id,
                    "num_layers": self.num_layers,
                    "dim": self.dim,
                    "dtype": self.dtype,
                },
                indent=1,
            )
            + "\n"
        )


@dataclass
class BuildReport:
    """What one ``build_store`` call did (for its own shard)."""

    sentences: int = 0  # distinct sentences of this shard
    already_stored: int = 0  # of those, found in the store and not recomputed
    embedded: int = 0  # embedded and committed by this call
    tokens_embedded: int = 0
    batches_run: int = 0  # biLM forward passes
    batches_skipped: int = 0  # batches whose sentences were all stored already
    chunks_written: int = 0
    seconds: float = 0.0


def entry_key(model_id: str, tokens: Sequence[str]) -> str:
    """The content hash that keys a sentence's vectors: 32 hex digits of BLAKE2b over the JSON
    list ``[model_id, tokens]`` (unambiguous whatever characters the tokens hold)."""
    payload = json.dumps([model_id, list(tokens)], ensure_ascii=False).encode("utf-8")
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


# ---------------------------------------------------------------- files written atomically


def _write_atomically(path: Path, write) -> None:
    """:func:`elmo_core.io.atomic_write` to ``PATH.<pid>.tmp``: readers see the old file or the
    whole new one. The temp name holds the pid so concurrent writers never share it, and ends in
    ``.tmp`` so a restarted build finds and deletes what a killed one left."""
    atomic_write(path, write, suffix=f".{os.getpid()}.tmp")


# ---------------------------------------------------------------- metadata and index


def read_info(directory: Path) -> StoreInfo:
    if directory.exists() and not directory.is_dir():
        raise FeatureStoreError(f"{directory}: not a directory (a feature store is a directory)")
    path = directory / "store.json"
    if not path.is_file():
        raise FeatureStoreError(f"{directory}: not a feature store (no store.json)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FeatureStoreError(f"{path}: not a valid JSON file ({err})") from None
    if not isinstance(raw, dict):
        raise FeatureStoreError(f"{path}: expected a JSON object")
    if raw.get("format") != FORMAT_VERSION:
        raise FeatureStoreError(f"{path}: format {raw.get('format')!r}, this code reads format {FORMAT_VERSION}")
    problems = [f"'{key}' is missing" for key in ("model_id", "num_layers", "dim", "dtype") if key not in raw]
    if not problems:
        if not isinstance(raw["model_id"], str):
            problems.append(f"'model_id' must be a string, found {raw['model_id']!r}")
        for key in ("num_layers", "dim"):
            if not isinstance(raw[key], int) or isinstance(raw[key], bool) or raw[key] < 1:
                problems.append(f"'{key}' must be a positive integer, found {raw[key]!r}")
        if raw["dtype"] not in DTYPES:
            problems.append(f"'dtype' must be one of {', '.join(DTYPES)}, found {raw['dtype']!r}")
    if problems:
        raise FeatureStoreError(
            f"{path}: {'; '.join(problems)} (damaged or edited by hand: delete the store to rebuild it)"
        )
    return StoreInfo(raw["model_id"], raw["num_layers"], raw["dim"], raw["dtype"])


def create_or_check_info(directory: Path, wanted: StoreInfo) -> None:
    """Write ``store.json`` for a new store, or check that an existing store holds the same model,
    shape and dtype (a store never mixes them)."""
    if directory.exists() and not directory.is_dir():
        raise FeatureStoreError(f"{directory}: not a directory (a feature store is a directory)")
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "store.json").exists():
        _write_atomically(directory / "store.json", lambda h: h.write(wanted.to_json().encode()))
    found = read_info(directory)
    if found != wanted:
        raise FeatureStoreError(
            f"{directory} holds features of model {found.model_id} ({found.num_layers} layers x {found.dim}, "
            f"{found.dtype}); this build is model {wanted.model_id} ({wanted.num_layers} x {wanted.dim}, "
            f"{wanted.dtype}). Use another directory, or delete this one to rebuild it."
        )


def _complete_lines(path: Path) -> list[str]:
    """The lines of a text file; a last line without its newline is not committed and is dropped."""
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise FeatureStoreError(
            f"{path}:{line}: damaged index (a byte that is not ASCII); delete the store to rebuild it"
        ) from None
    return text[: text.rfind("\n") + 1].splitlines()


def _parse_line(path: Path, number: int, line: str, fields: int) -> list:
    """``key, [chunk,] start, length`` of one index line, or a FeatureStoreError naming FILE:LINE."""
    parts = line.split("\t")
    try:
        if len(parts) != fields:
            raise ValueError(f"expected {fields} tab-separated fields, found {len(parts)}")
        start, length = int(parts[-2]), int(parts[-1])
        if start < 0 or length < 1:
            raise ValueError("negative start or empty entry")
    except ValueError as err:
        raise FeatureStoreError(
            f"{path}:{number}: damaged index line {line[:80]!r} ({err}); delete the store to rebuild it"
        ) from None
    return [*parts[:-2], start, length]


def _parse_merged_index(path: Path) -> dict[str, Entry]:
    entries = {}
    if path.is_file():
        for number, line in enumerate(_complete_lines(path), 1):
            key, chunk, start, length = _parse_line(path, number, line, 4)
            entries[key] = Entry(chunk, start, length)
    return entries


def _parse_keys_file(path: Path) -> dict[str, Entry]:
    chunk = path.with_suffix(".npy").name
    entries = {}
    for number, line in enumerate(_complete_lines(path), 1):
        key, start, length = _parse_line(path, number, line, 3)
        entries[key] = Entry(chunk, start, length)
    return entries


def read_index(directory: Path, attempts: int = 20) -> dict[str, Entry]:
    """All committed entries: ``index.tsv`` plus every chunk's ``.keys`` file.

    The keys files are listed *before* ``index.tsv`` is read. Compaction replaces ``index.tsv``
    before deleting the keys files it merged, so a keys file that vanishes between the listing and
    its reading means a newer ``index.tsv`` exists: read everything again.
    """
    for _ in range(attempts):
        keys_files = sorted((directory / "chunks").glob("*.keys"))
        entries = _parse_merged_index(directory / "index.tsv")
        try:
            for path in keys_files:
                entries.update(_parse_keys_file(path))
        except FileNotFoundError:
            continue
        return entries
    raise FeatureStoreError(f"{directory}: the index kept changing while being read ({attempts} attempts)")


def compact_index(directory: str | Path) -> int:
    """Fold every chunk's ``.keys`` file into ``index.tsv`` (rewritten atomically), then delete the
    folded keys files. Safe while readers read and other shards write. Returns the entry count."""
    directory = Path(directory)
    with FileLock(directory / "locks" / "compact.lock", wait=True, log=None):  # a compaction takes a moment
        for stale in directory.glob("index.tsv.*.tmp"):  # left by a compaction that was killed
            stale.unlink()
        keys_files = sorted((directory / "chunks").glob("*.keys"))
        entries = _parse_merged_index(directory / "index.tsv")
        for path in keys_files:
            entries.update(_parse_keys_file(path))
        lines = "".join(f"{key}\t{e.chunk}\t{e.start}\t{e.length}\n" for key, e in sorted(entries.items()))
        _write_atomically(directory / "index.tsv", lambda h: h.write(lines.encode("ascii")))
        for path in keys_files:
            path.unlink()
    return len(entries)


# ---------------------------------------------------------------- reading


class FeatureStore:
    """Read side of a store directory (see the module docstring for the layout).

    ``model_id``, when given, must be the id the store was built with: a trainer passes the identity
    of the model it would otherwise run, so features of another model are refused, never served.
    Entries committed after opening become visible after :meth:`refresh`.
    """

    def __init__(self, directory: str | Path, model_id: str | None = None, max_open_chunks: int = 64):
        self.directory = Path(directory)
        self.info = read_info(self.directory)
        if model_id is not None and model_id != self.info.model_id:
            raise FeatureStoreError(
                f"{self.directory} holds features of model {self.info.model_id}, "
                f"not of model {model_id}: rebuild it for this model"
            )
        self._max_open_chunks = max_open_chunks
        self._chunks: OrderedDict[str, np.ndarray] = OrderedDict()  # LRU of memory maps (each holds a file descriptor)
        self._entries: dict[str, Entry] = {}
        self.build_report: BuildReport | None = None
        self.refresh()

    @classmethod
    def build(
        cls, directory: str | Path, bilm: ElmoBiLm, model_id: str, sentences: Sequence[Sequence[str]], **kwargs
    ) -> FeatureStore:
        """:func:`build_store` (same keyword arguments), then open the store; what the build did is
        in ``store.build_report``."""
        report = build_store(directory, bilm, model_id, sentences, **kwargs)
        store = cls(directory, model_id)
        store.build_report = report
        return store

    @property
    def model_id(self) -> str:
        return self.info.model_id

    @property
    def num_layers(self) -> int:
        return self.info.num_layers

    @property
    def dim(self) -> int:
        return self.info.dim

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.info.dtype)

    def refresh(self) -> None:
        """Re-read the index to see entries committed since opening."""
        self._entries = read_index(self.directory)

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, tokens: Sequence[str]) -> str:
        return entry_key(self.model_id, tokens)

    def contains(self, tokens: Sequence[str]) -> bool:
        return self.key(tokens) in self._entries

    __contains__ = contains

    def keys(self) -> list[str]:
        return list(self._entries)

    def get(self, tokens: Sequence[str]) -> np.ndarray:
        """``(num_layers, len(tokens), dim)`` read-only view in the store's dtype; KeyError if absent."""
        key = self.key(tokens)
        if key not in self._entries:
            raise KeyError(f"sentence not in the feature store {self.directory}: {' '.join(tokens)[:80]!r}")
        array = self.get_by_key(key)
        if array.shape[1] != len(tokens):  # only a corrupted index could do this
            raise FeatureStoreError(
                f"{self.directory}: entry {key} has {array.shape[1]} tokens, expected {len(tokens)}"
            )
        return array

    def get_by_key(self, key: str) -> np.ndarray:
        entry = self._entries[key]
        rows = self._chunk(entry.chunk)[entry.start : entry.start + entry.length]
        return rows.transpose(1, 0, 2)  # chunk rows are (token, layer, dim) so a sentence is one block on disk

    def get_many(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """``[(num_layers, len(s), dim) for s in sentences]``; KeyError naming how many are absent."""
        keys = [self.key(s) for s in sentences]
        missing = [s for s, key in zip(sentences, keys) if key not in self._entries]
        if missing:
            raise KeyError(
                f"{len(missing)} of {len(sentences)} sentences are not in the feature store "
                f"{self.directory}, e.g. {' '.join(missing[0])[:80]!r}; build it first "
                f"(elmo-tasks embed --store DIR, or FeatureStore.build)"
            )
        return [self.get_by_key(key) for key in keys]

    def _chunk(self, name: str) -> np.ndarray:
        if name in self._chunks:
            self._chunks.move_to_end(name)
            return self._chunks[name]
        path = self.directory / "chunks" / name
        try:
            array = np.load(path, mmap_mode="r")
        except FileNotFoundError:
            raise FeatureStoreError(
                f"{path}: missing, but the index lists it (damaged store: delete it to rebuild it)"
            ) from None
        except (ValueError, OSError, EOFError) as err:
            raise FeatureStoreError(
                f"{path}: damaged chunk file ({type(err).__name__}: {str(err)[:120]}); delete the store to rebuild it"
            ) from None
        if array.ndim != 3 or array.shape[1:] != (self.num_layers, self.dim):
            raise FeatureStoreError(
                f"{path}: chunk of shape {array.shape}, expected (tokens, {self.num_layers}, {self.dim}) "
                "(damaged store: delete it to rebuild it)"
            )
        self._chunks[name] = array
        while len(self._chunks) > self._max_open_chunks:
            self._chunks.popitem(last=False)  # views already handed out keep their own mapping
        return array


def layers_for_batch(
    store: FeatureStore, sentences: Sequence[Sequence[str]], device: str | torch.device | None = None
) -> BiLmOutput:
    """What ``bilm(batch_to_ids(sentences))`` returns, read from the store: ``layers``
    ``(num_layers, batch, time, dim)`` float32, zero past each sentence's end; ``mask``
    ``(batch, time)`` bool. It unpacks as ``layers, mask = layers_for_batch(...)``."""
    arrays = store.get_many(sentences)
    time_steps = max((len(s) for s in sentences), default=0)
    layers = np.zeros((store.num_layers, len(sentences), time_steps, store.dim), dtype=np.float32)
    mask = torch.zeros(len(sentences), time_steps, dtype=torch.bool)
    for row, array in enumerate(arrays):
        layers[:, row, : array.shape[1]] = array
        mask[row, : array.shape[1]] = True
    if device is None:
        return BiLmOutput(torch.from_numpy(layers), mask)
    return BiLmOutput(torch.from_numpy(layers).to(device), mask.to(device))


# ---------------------------------------------------------------- writing


def _now() -> float:
    """The writers' clock (seconds, monotonic); tests replace it to force commits by time."""
    return time.monotonic()


class ShardWriter:
    """Appends entries to one shard's chunk files; at most one writer per shard name (flock).

    Entries are buffered in a preallocated ``(chunk_tokens, L, D)`` array and committed a chunk
    at a time, so memory stays at one chunk plus one batch however large the dataset. A chunk is
    also committed early, after the batch that brings the time since the last commit to
    ``commit_seconds`` (None: by size only), so a crash loses at most that much work. ``clock``
    (seconds, monotonic) is there for tests.
    """

    def __init__(
        self,
        directory: Path,
        name: str,
        info: StoreInfo,
        chunk_tokens: int,
        wait: bool | None = None,
        log: Callable[[str], Any] | None = log_to_stderr,
        commit_seconds: float | None = DEFAULT_COMMIT_SECONDS,
        clock: Callable[[], float] | None = None,
    ):
        if commit_seconds is not None and not commit_seconds > 0:
            raise BackboneUsageError(
                f"commit_seconds must be > 0 (or None: commit by size only), not {commit_seconds!r}"
            )
        self.directory, self.name, self.info = directory, name, info
        self.commit_seconds, self.clock = commit_seconds, clock if clock is not None else _now
        self.chunks_dir = directory / "chunks"
        self.chunks_dir.mkdir(parents=True, exist_ok=True)
        self.buffer = np.empty((max(1, chunk_tokens), info.num_layers, info.dim), dtype=info.dtype)
        self.fill = 0
        self.pending: list[tuple[str, int, int]] = []  # (key, first row, n) buffered, not yet committed
        self.chunks_written = 0
        # Another build of this shard (another seed's training on a fresh store, say): wait for it
        # (wait=None: unless ELMO_TASKS_NO_WAIT=1), then embed only what it did not store.
        self._lock = FileLock(directory / "locks" / f"{name}.lock", wait=wait, log=log).acquire()
        try:
            self.next_seq = self._remove_leftovers() + 1
        except BaseException:
            self._lock.release()
            raise
        self.last_commit = self.clock()  # the work a crash would lose is what was done since then

    def _remove_leftovers(self) -> int:
        """Delete what a killed run of this shard left uncommitted (temp files, chunks without
        keys); return the highest sequence number still in use."""
        for path in self.chunks_dir.glob(f"{self.name}-*.tmp"):
            path.unlink()
        committed = {entry.chunk for entry in read_index(self.directory).values()}
        highest = 0
        for path in self.chunks_dir.glob(f"{self.name}-*.npy"):
            match = _CHUNK_NAME.match(path.name)
            if path.name not in committed:
                path.unlink()
            elif match:
                highest = max(highest, int(match["seq"]))
        return highest

    def add_batch(self, entries: list[tuple[str, np.ndarray]]) -> None:
        """Buffer a whole batch of ``(key, (L, n, D) array)``. A batch never straddles two chunks,
        so after a crash every batch is either fully stored or not at all."""
        tokens = sum(array.shape[1] for _, array in entries)
        if self.fill and self.fill + tokens > len(self.buffer):
            self.flush()
        if tokens > len(self.buffer):  # one batch bigger than a chunk: that chunk is simply bigger
            self.buffer = np.empty((tokens,) + self.buffer.shape[1:], dtype=self.buffer.dtype)
        start, placed = self.fill, []
        for key, array in entries:
            n = array.shape[1]
            self.buffer[start : start + n] = array.transpose(1, 0, 2)
            placed.append((key, start, n))
            start += n
        if self.info.dtype == "float16" and not np.isfinite(self.buffer[self.fill : start]).all():
            raise FeatureStoreError(
                f"{self.directory}: a vector overflows float16; build the store "
                f"with dtype='float32' (--store-dtype float32)"
            )
        self.pending += placed
        self.fill = start
        if self.fill >= len(self.buffer) or self.commit_due():
            self.flush()

    def commit_due(self) -> bool:
        """True when ``commit_seconds`` have passed since the last commit (or since the writer started)."""
        return self.commit_seconds is not None and self.clock() - self.last_commit >= self.commit_seconds

    def flush(self) -> None:
        """Commit the buffered entries: data file first, then its keys file (the commit point)."""
        if not self.pending:
            return
        stem = f"{self.name}-{self.next_seq:06d}"
        data = self.buffer[: self.fill]
        _write_atomically(self.chunks_dir / f"{stem}.npy", lambda h: np.save(h, data))
        lines = "".join(f"{key}\t{start}\t{n}\n" for key, start, n in self.pending)
        _write_atomically(self.chunks_dir / f"{stem}.keys", lambda h: h.write(lines.encode("ascii")))
        self.next_seq += 1
        self.chunks_written += 1
        self.fill = 0
        self.pending = []
        self.last_commit = self.clock()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._lock.release()


@contextlib.contextmanager
def _type_cache_off(bilm: ElmoBiLm) -> Iterator[None]:
    # Cached layer-0 vectors were computed in whatever batch first saw the word, which would make a
    # sentence's vectors depend on the batches before it (and so differ after a resume).
    saved = bilm.type_cache.max_size
    bilm.type_cache.max_size = 0
    try:
        yield
    finally:
        bilm.type_cache.max_size = saved


@contextlib.contextmanager
def _rows_unpacked(bilm: ElmoBiLm) -> Iterator[None]:
    # Packed LSTM rows (row_packing.py) hold the sentences of a whole window, whose row counts
    # decide the GEMMs' rounding: a resumed or sharded build, whose windows hold other batches,
    # would store other bits. Unpacked, a sentence's vectors depend on its batch alone.
    saved = getattr(bilm, "pack_sentences", None)  # absent on a model pickled before it
    bilm.pack_sentences = False
    try:
        yield
    finally:
        bilm.pack_sentences = saved


def _device_of(bilm: ElmoBiLm) -> torch.device:
    parameter = next(bilm.parameters(), None)  # a quantised model may hide its weights from parameters()
    return parameter.device if parameter is not None else torch.device("cpu")


def distinct_sentences(model_id: str, sentences: Sequence[Sequence[str]]) -> tuple[list[str], list[Sequence[str]]]:
    """``(keys, token lists)`` of the distinct sentences, in first-seen order (not copied)."""
    seen: dict[str, Sequence[str]] = {}
    for tokens in sentences:
        if not tokens:
            raise BackboneUsageError("a sentence has no tokens: ELMo needs at least one")
        seen.setdefault(entry_key(model_id, tokens), tokens)
    return list(seen), list(seen.values())


def build_store(
    directory: str | Path,
    bilm: ElmoBiLm,
    model_id: str,
    sentences: Sequence[Sequence[str]],
    dtype: str = "float16",
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    batch_tokens: int = 4000,
    max_batch: int = 256,
    chunk_tokens: int | None = None,
    device: str | torch.device | None = None,
    compact: bool | None = None,
    wait: bool | None = None,
    log: Callable[[str], Any] | None = log_to_stderr,
    commit_seconds: float | None = DEFAULT_COMMIT_SECONDS,
) -> BuildReport:
    """Embed the sentences of shard ``(rank, world)`` that the store lacks and commit them.

    Resumable: run it again after a crash and it embeds only the batches not yet stored.
    ``chunk_tokens`` (default: 64 MiB worth) bounds the write buffer; ``commit_seconds`` (default
    60; None: by size only) bounds the time between commits, so a crash loses at most about that much
    work. Neither changes what is stored, only which chunk holds it. ``compact`` (default: when
    ``world == 1``) merges the index at the end; sharded builds let rank 0 do it after a barrier.

    One build per shard at a time: a second build of the same shard (two seeds starting side by
    side on a fresh store) waits for the first (saying so through ``log``) and then embeds only
    what the first did not store; ``wait=False`` (or ``ELMO_TASKS_NO_WAIT=1`` when ``wait`` is not
    given) makes it fail at once naming the holder's PID instead.
    """
    if dtype not in DTYPES:
        raise BackboneUsageError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    rank, world = shard
    if not 0 <= rank < world:
        raise BackboneUsageError(f"shard {shard}: rank must be in [0, world)")
    if commit_seconds is not None and not commit_seconds > 0:  # checked before the store is touched
        raise BackboneUsageError(f"commit_seconds must be > 0 (or None: commit by size only), not {commit_seconds!r}")
    started = time.perf_counter()
    directory = Path(directory)
    info = StoreInfo(model_id, bilm.num_layers, bilm.output_dim, dtype)
    create_or_check_info(directory, info)
    device = device if device is not None else _device_of(bilm)
    if chunk_tokens is None:
        chunk_tokens = DEFAULT_CHUNK_BYTES // (info.num_layers * info.dim * np.dtype(dtype).itemsize)

    keys, unique = distinct_sentences(model_id, sentences)
    plan = plan_embedding_batches(unique, max_tokens=batch_tokens, max_batch=max_batch)
    mine = plan[rank::world]

    writer = ShardWriter(directory, f"r{rank}", info, chunk_tokens, wait=wait, log=log, commit_seconds=commit_seconds)
    try:
        stored = set(read_index(directory))  # read under the shard's lock: a build we waited for is in it
        todo = [batch for batch in mine if any(keys[i] not in stored for i in batch)]
        report = BuildReport(sentences=sum(len(b) for b in mine), batches_skipped=len(mine) - len(todo))
        report.already_stored = sum(keys[i] in stored for batch in mine for i in batch)
        with (
            _type_cache_off(bilm),
            _rows_unpacked(bilm),
            tqdm(
                total=sum(len(unique[i]) for b in todo for i in b),
                unit="tok",
                disable=bar_disabled(progress),
                desc=f"store shard {rank}/{world}",
            ) as bar,
        ):
            for batch, layers in embed_windows(bilm, unique, todo, device):
                new = [
                    (keys[i], layers[:, row, : len(unique[i])]) for row, i in enumerate(batch) if keys[i] not in stored
                ]
                writer.add_batch(new)
                report.batches_run += 1
                report.embedded += len(new)
                report.tokens_embedded += sum(array.shape[1] for _, array in new)
                bar.update(sum(len(unique[i]) for i in batch))
    finally:
        writer.close()
    report.chunks_written = writer.chunks_written
    if compact if compact is not None else world == 1:
        compact_index(directory)
    report.seconds = time.perf_counter() - started
    return report


# ---------------------------------------------------------------- several processes (torchrun)


def rank_and_world() -> tuple[int, int]:
    """``(RANK, WORLD_SIZE)`` from the environment torchrun sets; ``(0, 1)`` outside torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def build_store_distributed(
    directory: str | Path, bilm: ElmoBiLm, model_id: str, sentences: Sequence[Sequence[str]], **kwargs
) -> BuildReport:
    """``build_store`` for this process's shard when run under torchrun (one process otherwise).

    Every rank writes its own chunk files; after a barrier rank 0 merges the index, and a second
    barrier makes every rank return only once the store is committed. The report returned on rank
    0 sums all ranks. The process group uses gloo: a barrier needs nothing faster, on CPU or GPU.
    """
    rank, world = rank_and_world()
    if world == 1:
        return build_store(directory, bilm, model_id, sentences, **kwargs)
    import torch.distributed as dist

    started_here = not dist.is_initialized()
    if started_here:  # ranks can finish hours apart on a big dataset: a generous barrier timeout
        dist.init_process_group("gloo", timeout=datetime.timedelta(hours=12))
    try:
        kwargs.setdefault("progress", rank == 0)
        report = build_store(directory, bilm, model_id, sentences, shard=(rank, world), compact=False, **kwargs)
        reports: list[BuildReport | None] = [None] * world
        dist.all_gather_object(reports, report)  # also the barrier: every shard is committed
        if rank == 0:
            compact_index(directory)
        dist.barrier()
    finally:
        if started_here:
            dist.destroy_process_group()
    return _sum_reports(reports) if rank == 0 else report


def _sum_reports(reports: list[BuildReport]) -> BuildReport:
    total = BuildReport()
    for report in reports:
        for field in (
            "sentences",
            "already_stored",
            "embedded",
            "tokens_embedded",
            "batches_run",
            "batches_skipped",
            "chunks_written",
        ):
            setattr(total, field, getattr(total, field) + getattr(report, field))
        total.seconds = max(total.seconds, report.seconds)
    return total
