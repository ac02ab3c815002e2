"""Typed task configs: the sections every task shares (data, backbone, mix, model, train) and the
rules the loader applies (legacy keys, keys a resumed run may change).

A task extends :class:`DataConfig` / :class:`ModelConfig` with its own keys and declares its
:class:`TaskConfig` subclass as ``Task.Config``; :func:`tasks.registry.load_task_config` reads the
``task:`` key, finds the task in the registry and checks the whole file against that class before
anything is read or embedded (unknown keys, wrong types and out-of-range values all at once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from data.config import (
    ConfigError,
    changed_keys,  # noqa: F401  (re-exported for callers)
    fraction,
    non_negative,
    positive,
    to_dict,
    unit_interval,
)

SPLITS = ("train", "dev", "test")

# Keys a resumed run may change: budgets, not the model or its data.
RESUMABLE_KEYS = ("train.epochs", "train.patience", "data.hint", "data.strict")


@dataclass
class DataConfig:
    """Where a task's files are. ``limit``: use only the first N examples (sentences, trees, WSD
    sentences) of every split, or of the splits named in a mapping such as ``{train: 500}``.
    ``strict``: suspicious input (illegal tag transitions, control characters in tokens, entity
    types unseen in training, gold keys that are no WordNet 3.0 sense ...) is an error instead of
    a counted warning (see data/warnings.py; ``--strict`` on the command line does the same)."""

    dir: str | None = None
    train: str | None = None
    dev: str | None = None
    test: str | None = None
    limit: int | dict[str, int] | None = field(default=None, metadata=positive)
    hint: str = ""
    strict: bool = False

    def limit_for(self, split: str) -> int | None:
        return self.limit.get(split) if isinstance(self.limit, dict) else self.limit

    def problems(self) -> list[str]:
        if not isinstance(self.limit, dict):
            return []
        bad = [f"limit.{k}: expected one of {', '.join(SPLITS)}" for k in self.limit if k not in SPLITS]
        return bad + [f"limit.{k}: expected a number > 0, found {v!r}" for k, v in self.limit.items() if v <= 0]


@dataclass
class BackboneConfig:
    """A named biLM (``default`` ships with the package) or an options JSON + HDF5 weights.

    ``store``: an on-disk feature store directory (the backbone runs once per sentence, ever);
    ``null`` keeps features in memory. ``cache: false`` runs the backbone on every batch instead.
    ``options_sha256`` / ``weights_sha256``: the sha256 of the files the run was trained with,
    recorded by the trainer in the run's ``config.yaml``; predict, evaluate and a resumed run refuse
    files with other hashes (:func:`tasks.features.check_run_backbone`)."""

    name: str | None = "default"
    options: str | None = None
    weights: str | None = None
    store: str | None = None
    store_dtype: Literal["float16", "float32"] = "float16"
    cache: bool = True
    options_sha256: str | None = None
    weights_sha256: str | None = None

    def problems(self) -> list[str]:
        problems = []
        if (self.options is None) != (self.weights is None):
            problems.append("options / weights: set both (an options JSON and its HDF5 weights) or neither")
        if (self.options_sha256 is None) != (self.weights_sha256 is None):
            problems.append("options_sha256 / weights_sha256: set both (as a run records them) or neither")
        for key in ("options_sha256", "weights_sha256"):
            value = getattr(self, key)
            if value is not None and not re.fullmatch("[0-9a-f]{64}", value):
                problems.append(f"{key}: expected a sha256 (64 lowercase hex digits), found {value!r}")
        return problems


@dataclass
class MixConfig:
    """The task's ScalarMix over the biLM layers (``layer`` is for ``mode: single``)."""

    mode: Literal["learned", "average", "top", "single", "concat"] = "learned"
    layer: int | None = field(default=None, metadata=non_negative)
    l2: float = field(default=0.0, metadata=non_negative)
    layer_norm: bool = False

    def problems(self) -> list[str]:
        if self.mode == "single" and self.layer is None:
            return ["layer: mode 'single' needs the layer index (0 = the char CNN)"]
        return []


@dataclass
class ElmoConfig:
    enabled: bool = True
    dropout: float = field(default=0.5, metadata=unit_interval)
    mix: MixConfig = field(default_factory=MixConfig)


@dataclass
class WordsConfig:
    """Word embeddings (``dim: 0`` = none). ``pretrained``: initialise them from vectors, a name
    (``glove.6B.50d``, from the ``elmo-tasks[glove]`` extra) or a GloVe / word2vec text file
    (``.txt``, ``.gz``, or ``archive.zip#member.txt``); ``trainable: false`` freezes them.
    Lookups are lower-cased when ``lowercase``; ``fold_digits`` maps every digit to 0 (good for
    learned vectors, wrong for pretrained ones, which know numbers)."""

    dim: int = field(default=50, metadata=non_negative)
    lowercase: bool = True
    min_count: int = field(default=2, metadata=positive)
    pretrained: str | None = None
    trainable: bool = True
    fold_digits: bool = True

    def problems(self) -> list[str]:
        if self.pretrained and self.dim == 0:
            return ["dim: pretrained vectors need the word embeddings on (dim = the vectors' width)"]
        return []


@dataclass
class CharsConfig:
    """A character CNN over each word (``filters: 0`` = none)."""

    dim: int = field(default=16, metadata=positive)
    filters: int = field(default=30, metadata=non_negative)
    width: int = field(default=3, metadata=positive)


@dataclass
class ModelConfig:
    """What every head has: its use of ELMo. Tasks add their own keys in a subclass."""

    elmo: ElmoConfig = field(default_factory=ElmoConfig)


@dataclass
class TrainConfig:
    epochs: int = field(default=20, metadata=positive)
    batch_size: int = field(default=32, metadata=positive)
    lr: float = field(default=1e-3, metadata=positive)
    lr_decay: float = field(default=1.0, metadata=fraction)  # epoch e (from 1) trains at lr * lr_decay ** (e - 1)
    clip: float = field(default=5.0, metadata=positive)
    patience: int = field(default=4, metadata=positive)
    seed: int = 1
    threads: int = field(default=0, metadata=non_negative)


@dataclass
class TaskConfig:
    """A whole task config. Subclasses narrow ``data`` and ``model`` to the task's own sections."""

    task: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def rename_legacy_keys(tree: dict) -> dict:
    """Move keys of configs written before the Task protocol (e.g. in old run directories) to
    their current place, so old files keep loading: ``data.max_<split>_sentences`` ->
    ``data.limit.<split>``, ``model.words.glove`` -> ``model.words.pretrained``."""
    words = (tree.get("model") or {}).get("words") if isinstance(tree.get("model"), dict) else None
    if isinstance(words, dict) and "glove" in words:
        glove = words.pop("glove")
        if glove is not None or "pretrained" not in words:
            words["pretrained"] = glove
    data = tree.get("data")
    if isinstance(data, dict):
        for split in SPLITS:
            value = data.pop(f"max_{split}_sentences", None)
            if value is not None:
                limit = data.get("limit")
                data["limit"] = {**(limit if isinstance(limit, dict) else {}), split: value}
    return tree


__all__ = [
    "TaskConfig",
    "DataConfig",
    "BackboneConfig",
    "MixConfig",
    "ElmoConfig",
    "WordsConfig",
    "CharsConfig",
    "ModelConfig",
    "TrainConfig",
    "ConfigError",
    "changed_keys",
    "rename_legacy_keys",
    "to_dict",
    "fraction",
    "positive",
    "non_negative",
    "unit_interval",
    "RESUMABLE_KEYS",
    "SPLITS",
]
