"""ELMo layers for a task's sentences: the backbone (or its feature store) -> a feature source.

Data flow: readers -> backbone (here: loaded, and its layers kept) -> the task's ScalarMix ->
head -> metrics. Every source gives a sentence's layers as a ``(num_layers, length, dim)`` array;
:meth:`FeatureSource.batch` pads them (the one padding path) into
``layers (num_layers, batch, time, dim)`` float32 and ``mask (batch, time)`` bool.

* :class:`InMemoryFeatures` -- computed once by the frozen backbone, kept in float16;
* :class:`StoreFeatures` -- memory-mapped from an on-disk feature store (elmo_core/store.py),
  which embeds only what it lacks;
* :class:`LiveFeatures` -- the backbone runs on each batch (prediction on new text).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import deque
from pathlib import Path

import numpy as np
import torch

from .config import BackboneConfig


class FeatureSource(ABC):
    """Per-sentence biLM layers of one split, by sentence index."""

    num_layers: int
    dim: int

    @abstractmethod
    def sentence_layers(self, indices: list[int]) -> list[np.ndarray]:
        """``[(num_layers, length, dim)]`` for the sentences ``indices``."""

    def batch(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``layers (num_layers, batch, time, dim)`` float32 (zero past each sentence) and ``mask (batch, time)``."""
        arrays = self.sentence_layers(indices)
        longest = max(a.shape[1] for a in arrays)
        layers = np.zeros((self.num_layers, len(arrays), longest, self.dim), dtype=np.float32)
        mask = np.zeros((len(arrays), longest), dtype=bool)
        for row, array in enumerate(arrays):
            layers[:, row, : array.shape[1]] = array
            mask[row, : array.shape[1]] = True
        return torch.from_numpy(layers), torch.from_numpy(mask)


class InMemoryFeatures(FeatureSource):
    """All layers of every sentence, kept as float16 (halves memory; the mix runs in float32)."""

    def __init__(self, arrays: list[np.ndarray]):
        self.arrays = arrays
        self.num_layers, _, self.dim = arrays[0].shape

    @classmethod
    def compute(cls, bilm, sentences: list[list[str]], dtype=np.float16, progress: bool = True) -> InMemoryFeatures:
        from elmo_core.embed import embed_sentences, plan_embedding_batches

        arrays: list[np.ndarray | None] = [None] * len(sentences)
        for index, layers in embed_sentences(bilm, sentences, plan_embedding_batches(sentences), progress=progress):
            arrays[index] = layers.astype(dtype)
        return cls(arrays)  # type: ignore[arg-type]

    def sentence_layers(self, indices: list[int]) -> list[np.ndarray]:
        return [self.arrays[i] for i in indices]


class StoreFeatures(InMemoryFeatures):
    """Read-only, memory-mapped views into a feature store (nothing is copied until a batch is padded)."""

    @classmethod
    def open(
        cls,
        store_dir: Path,
        bilm,
        model_id: str,
        sentences: list[list[str]],
        dtype: str,
        progress: bool,
        wait: bool | None = None,
        log=None,
    ) -> StoreFeatures:
        """Embed what the store lacks, then map it. ``wait``/``log``: a build of the same store by
        another process is waited for (see :func:`elmo_core.store.build_store`).
        ``store_dir`` is the configured directory (``backbone.store``): features of ``model_id``
        live in it, or in its ``by-model/`` sub-directory when it holds another model's
        (:func:`store_dir_for_model`)."""
        from elmo_core.io import log_to_stderr
        from elmo_core.store import FeatureStore, FeatureStoreError

        log = log or log_to_stderr
        directory = store_dir_for_model(store_dir, model_id, log)
        try:
            store = FeatureStore.build(
                directory, bilm, model_id, sentences, dtype=dtype, progress=progress, wait=wait, log=log
            )
        except FeatureStoreError:
            # Another model's build created store.json between our look and our build (two
            # backbones started side by side on a fresh store): take that model's place into account.
            again = store_dir_for_model(store_dir, model_id, log)
            if again == directory:
                raise
            store = FeatureStore.build(
                again, bilm, model_id, sentences, dtype=dtype, progress=progress, wait=wait, log=log
            )
        return cls([np.asarray(store.get(tokens)) for tokens in sentences])


BY_MODEL = "by-model"
_ANNOUNCED: set[tuple[str, str]] = set()  # (configured store, model id) already logged by this process


def store_dir_for_model(store: str | Path, model_id: str, log=None) -> Path:
    """The directory that holds ``model_id``'s features for the configured store ``store``
    (``backbone.store``). A store directory holds one model's features (its ``store.json``), so:
    ``store`` itself when it has no ``store.json`` yet (or an unreadable one: the build then says
    what is wrong) or records ``model_id``; otherwise ``store/by-model/<model_id[:16]>``, created
    on build, and one line through ``log`` (once per process) says so. An upgraded backbone thus
    builds beside the old one's features, which stay untouched for the runs that still need them.
    ``elmo_core.store`` itself stays strict: it never looks into ``by-model/``."""
    from elmo_core.store import FeatureStoreError, read_info

    store = Path(store)
    if not (store / "store.json").is_file():
        return store
    try:
        found = read_info(store).model_id
    except FeatureStoreError:
        return store
    if found == model_id:
        return store
    directory = store / BY_MODEL / model_id[:16]
    announced = (str(store), model_id)
    if log is not None and announced not in _ANNOUNCED:
        _ANNOUNCED.add(announced)
        log(f"{store} holds another model's features ({found}); using {directory} for model {model_id}")
    return directory


class LiveFeatures(FeatureSource):
    """Runs the backbone on the sentences of each batch; nothing is kept once it is handed out.

    A caller that knows its batches in advance says so with :meth:`expect`: they are then embedded
    a window of batches at a time (``ElmoBiLm.forward_many``, faster on a CPU with 2 threads), the
    same vectors bit for bit."""

    def __init__(self, bilm, sentences: list[list[str]]):
        self.bilm, self.sentences = bilm, sentences
        self.num_layers, self.dim = bilm.num_layers, bilm.output_dim
        self._windows: deque[list[list[int]]] = deque()  # the expected batches not embedded yet
        self._ready: dict[tuple[int, ...], list[np.ndarray]] = {}  # embedded, not yet asked for

    def expect(self, batches: list[list[int]]) -> None:
        """The batches of sentence indices the caller will ask for next, in order. Asking for other
        batches still works (one call each); expected batches never asked for cost their window's
        work only once one batch of that window has been asked for."""
        from elmo_core.embed import plan_windows, window_tokens_for

        self._windows = deque(plan_windows(batches, self.sentences, window_tokens_for(self.bilm)))
        self._ready.clear()

    def sentence_layers(self, indices: list[int]) -> list[np.ndarray]:
        key = tuple(indices)
        if key not in self._ready and self._windows and key in map(tuple, self._windows[0]):
            self._embed_window(self._windows.popleft())
        if key in self._ready:
            return self._ready.pop(key)
        return self._embed([indices])[0]

    def _embed_window(self, window: list[list[int]]) -> None:
        self._ready.update(zip(map(tuple, window), self._embed(window)))

    def _embed(self, batches: list[list[int]]) -> list[list[np.ndarray]]:
        from elmo_core.embed import embed_batches

        arrays = embed_batches(self.bilm, [[self.sentences[i] for i in batch] for batch in batches])
        return [
            [layers[:, row, : len(self.sentences[i])] for row, i in enumerate(batch)]
            for batch, layers in zip(batches, arrays)
        ]


# -- the backbone a config names ------------------------------------------------------------------
def backbone_files(backbone: BackboneConfig) -> tuple[str, str]:
    """(options JSON, HDF5 weights) of the configured biLM."""
    from elmo_core.models import resolve

    if backbone.options:
        return backbone.options, backbone.weights  # type: ignore[return-value]
    options, weights = resolve(backbone.name or "default")
    return str(options), str(weights)


def backbone_identity(backbone: BackboneConfig) -> str:
    """How logs and ``results.json`` name the biLM."""
    if backbone.options:
        return f"{backbone.options} + {backbone.weights}"
    from elmo_core.models import labelled_name

    return f"named model '{labelled_name(backbone.name or 'default')}'"


SHA256_KEYS = ("options_sha256", "weights_sha256")
_SHA256_MEMO: dict[tuple, str] = {}


def backbone_sha256(backbone: BackboneConfig) -> dict[str, str]:
    """``{options_sha256, weights_sha256}`` of the files ``backbone`` resolves to now (what a run
    records in its ``config.yaml``). A file is hashed once per process while its path, size, mtime
    and inode stay the same (a grid's cells, a resumed run's two checks)."""
    from elmo_core.errors import ElmoFileError
    from elmo_core.io import file_sha256

    sums = {}
    for key, what, path in zip(SHA256_KEYS, ("options", "weight"), backbone_files(backbone)):
        if not Path(path).is_file():
            raise ElmoFileError(f"{path}: {what} file not found")
        stat = Path(path).stat()
        memo = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if memo not in _SHA256_MEMO:
            _SHA256_MEMO[memo] = file_sha256(path)
        sums[key] = _SHA256_MEMO[memo]
    return sums


def check_run_backbone(run_dir: str | Path, recorded: BackboneConfig, backbone: BackboneConfig, remedy: str) -> bool:
    """Whether the run in ``run_dir``, whose config recorded the backbone ``recorded`` (its
    ``*_sha256``), may use ``backbone`` now: a :class:`~tasks.errors.RunDirError` naming both
    weights hashes and ``remedy`` when the files differ from those it was trained with; ``False``
    and one :class:`~tasks.errors.UncheckedBackboneWarning` when the run predates the record."""
    import warnings

    from .errors import RunDirError, UncheckedBackboneWarning

    if recorded.weights_sha256 is None or recorded.options_sha256 is None:
        warnings.warn(
            f"{run_dir}: this run predates backbone hashes (its config.yaml records no sha256 of the "
            f"backbone's files), so its backbone cannot be checked; it runs on {backbone_identity(backbone)} "
            "as configured. A run trained on the previous 'default' (before the stronger default backbone) "
            "needs the old files: set backbone.options and backbone.weights in its config.yaml to them",
            UncheckedBackboneWarning,
            stacklevel=3,
        )
        return False
    now = backbone_sha256(backbone)
    then = {key: getattr(recorded, key) for key in SHA256_KEYS}
    if now == then:
        return True
    options_note = (
        f"; options sha256 {then['options_sha256'][:16]}… then, {now['options_sha256'][:16]}… now"
        if now["options_sha256"] != then["options_sha256"]
        else ""
    )
    raise RunDirError(
        run_dir,
        f"trained on another backbone than {backbone_identity(backbone)} is now: weights sha256 "
        f"{then['weights_sha256'][:16]}…{recorded_release(recorded, backbone)} recorded, "
        f"{now['weights_sha256'][:16]}… now ({backbone_files(backbone)[1]})"
        f"{options_note}; its head would read features it was not trained on. {remedy}",
    )


def recorded_release(recorded: BackboneConfig, backbone: BackboneConfig) -> str:
    """`` (default@v1, card docs/…)`` when the recorded weights are an earlier release of the
    shipped model the run names, so the user knows which files to point it at; else ``""``."""
    from elmo_core.models import find_release, split_version

    if backbone.options or recorded.options:
        return ""
    name = split_version(recorded.name or backbone.name or "default")[0]
    release = find_release(name, "weights_sha256", recorded.weights_sha256)
    return f" ({name}@{release['version']}, model card {release['card']})" if release else ""


def load_backbone(backbone: BackboneConfig, device: str = "cpu", precision: str = "fp32"):
    from elmo_core import load_bilm

    return load_bilm(
        name=backbone.name, options=backbone.options, weights=backbone.weights, device=device, precision=precision
    )


def feature_source(
    backbone: BackboneConfig, bilm, sentences: list[list[str]], progress: bool, wait: bool | None = None, log=None
) -> FeatureSource:
    """The source the config asks for: live (``cache: false``), a feature store, or in memory."""
    if not backbone.cache:
        return LiveFeatures(bilm, sentences)
    if backbone.store:
        from elmo_core.loading import model_identity

        model_id = model_identity(*backbone_files(backbone))
        return StoreFeatures.open(
            Path(backbone.store), bilm, model_id, sentences, backbone.store_dtype, progress, wait, log
        )
    return InMemoryFeatures.compute(bilm, sentences, progress=progress)


def attach_features(
    task, bilm, progress: bool, cache: dict | None = None, wait: bool | None = None, log=None
) -> dict[str, float]:
    """Give every loaded split of ``task`` its ELMo features (the backbone is frozen, so once per
    run); returns seconds per split. ``cache`` (keyed by backbone and the split's exact tokens)
    keeps what the task attached, so later runs of this process, or processes forked from it
    (the cells of a layer-weighting grid), reuse it without the backbone. ``wait`` / ``log``: how
    a feature store another process is building is waited for (see ``build_store``)."""
    from .base import Task

    backbone = task.config.backbone
    identity = backbone_identity(backbone)
    # Sentence-level features are shared by every task over the same sentences (NER, POS and
    # chunking read CoNLL); a task that keeps something else (WSD: instance vectors) keeps its own.
    kind = "sentences" if type(task).attach_features is Task.attach_features else task.name
    seconds = {}
    for name, split in task.splits.items():
        started = time.perf_counter()
        key = (identity, kind, hash(tuple(tuple(s) for s in split.tokens)))
        if backbone.cache and cache is not None and key in cache:
            split.features = cache[key]
        else:
            task.attach_features(split, feature_source(backbone, bilm, split.tokens, progress, wait, log))
            if backbone.cache and cache is not None:
                cache[key] = split.features
        seconds[name] = round(time.perf_counter() - started, 1)
    return seconds
