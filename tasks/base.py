"""The Task contract: what the trainer, the CLI, the run loader and the layer grid may use of a task.

A task turns its files into splits, its splits into batches, a head's outputs into predictions,
and predictions into scores. Everything else (the training loop, checkpoints, features, run
directories, the command line, the grid) is shared and talks to a task only through the members
below. Adding a task is one module (a :class:`Task` subclass, its config classes and its head),
one YAML config, and one line in :mod:`tasks.registry`; docs/architecture.md walks through it.

Facts (class attributes)
    ``name``, ``metric`` (the key of :meth:`score` the trainer selects on, on dev; higher is
    better), ``metric_label`` (how tables name it), ``Config`` (the task's typed config class),
    ``default_config`` (its file in ``configs/``), ``reduced`` (overrides for the grid's quick
    mode), ``cost`` (relative cost of one grid cell), ``needs_elmo``, ``predict_batch_size``.

Members a task implements
    :meth:`read` (one labelled file -> a split), :meth:`fit_vocab` / :meth:`restore_vocab`,
    :meth:`tensorise`, :meth:`build_model` (-> a :class:`Head`), :meth:`make_batch`,
    :meth:`decode`, :meth:`score`, :meth:`write_predictions`; optionally :meth:`read_input`,
    :meth:`unlabelled` (raw or tokenised text -> a split), :meth:`batches`, :meth:`attach_features`,
    :meth:`write_output` and :meth:`records` (one object per sentence: JSON output, Python API).

Shared scaffolding (not replaced; :meth:`predict` may be extended by a task that post-processes
its result through ``super()``, as NER writes tags in the input file's own scheme)
    :meth:`load` (resolve the configured paths, read, cut to ``data.limit``), :meth:`predict`
    (the batched prediction loop), :meth:`read_unlabelled`, :meth:`uses_elmo`, :meth:`data_path`.

A split is any object with ``tokens`` (the words the biLM reads, one list per sentence),
``features`` (set by :meth:`attach_features`), ``__len__`` (examples) and ``summary()``.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from data.errors import DataFormatError
from data.tokenize import MAX_SENTENCE_TOKENS, TextSentence, read_sentences
from elmo_core.scalar_mix import ScalarMix

from .batching import length_sorted_batches
from .config import MixConfig, TaskConfig
from .errors import UsageError
from .records import PredictedSentence


class Head(nn.Module):
    """A task's model over the frozen layers.

    ``forward(**batch) -> {"loss": scalar, ...}``: ``batch`` is what :meth:`Task.make_batch`
    returns; the loss includes the mix's penalty, so the trainer needs nothing else.
    ``mix`` is the head's ScalarMix (``None`` without ELMo); :meth:`mix_weights` reports it.
    """

    mix: ScalarMix | None

    def mix_weights(self) -> dict | None:
        """``{"mode", "s": weights after softmax, "gamma"}`` of the head's mix, or ``None`` without ELMo."""
        if getattr(self, "mix", None) is None:
            return None
        return {
            "mode": self.mix.mode,
            "s": [float(w) for w in self.mix.normalized_weights().detach()],
            "gamma": float(self.mix.gamma.detach()),
        }

    def mix_penalty(self) -> torch.Tensor | float:
        return self.mix.penalty() if getattr(self, "mix", None) is not None else 0.0


def build_mix(num_layers: int, mix: MixConfig) -> ScalarMix:
    return ScalarMix(num_layers, mode=mix.mode, layer=mix.layer, do_layer_norm=mix.layer_norm, l2_coef=mix.l2)


class Task(ABC):
    """One task: reading, vocabularies, model, batches, prediction and scoring. See the module docstring."""

    name: ClassVar[str]
    metric: ClassVar[str]
    metric_label: ClassVar[str] = ""
    Config: ClassVar[type[TaskConfig]] = TaskConfig
    default_config: ClassVar[str] = ""
    reduced: ClassVar[dict[str, Any]] = {}
    cost: ClassVar[float] = 1.0
    needs_elmo: ClassVar[bool] = False
    predict_batch_size: ClassVar[int] = 64

    def __init__(self, config: TaskConfig):
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config
        self.splits: dict[str, Any] = {}

    # -- reading ------------------------------------------------------------------------------
    @abstractmethod
    def read(self, path: Path, limit: int | None = None, training: bool = False):
        """One labelled file in the task's format -> a split (its first ``limit`` examples)."""

    def read_input(self, path: Path, input_format: str) -> tuple[Any, str]:
        """A file for ``evaluate`` (``input_format="labelled"``) or ``predict`` (``auto``, ``text``,
        ``tokenized``, ``conll``/``labelled``); returns the split and the format that was read.
        Default: the task's labelled format only."""
        return self.read(path), "labelled"

    def unlabelled(self, sentences: list[TextSentence]) -> Any:
        """A split of unlabelled sentences (raw text split by :mod:`data.tokenize`, tokenised lines,
        or what the Python API was given), keeping them as its ``sentences`` so that
        :meth:`records` can point into their text. Default: the task reads no unlabelled text."""
        raise UsageError(f"task {self.name!r} cannot read unlabelled text, only its labelled format")

    def read_unlabelled(self, path: Path, input_format: str, max_tokens: int = MAX_SENTENCE_TOKENS) -> Any:
        """A ``text`` or ``tokenized`` file through :func:`data.tokenize.read_sentences` and :meth:`unlabelled`."""
        return self.unlabelled(read_sentences(path, input_format, max_tokens))

    def data_path(self, split: str) -> Path:
        """``data.<split>`` joined to ``data.dir`` when relative; a clear error when absent."""
        data = self.config.data
        value = getattr(data, split)
        if value is None:
            raise DataFormatError("<config>", None, f"data.{split} is not set")
        path = Path(value)
        if not path.is_absolute() and data.dir:
            path = Path(data.dir) / path
        if not path.exists():
            raise DataFormatError(path, None, f"data file for split '{split}' not found. {data.hint}".strip())
        return path

    def configured_splits(self) -> list[str]:
        return [s for s in ("train", "dev", "test") if getattr(self.config.data, s) is not None]

    def load(self, splits=("train", "dev", "test")) -> list[str]:
        """Read the configured splits (checking every path first); one summary line per split."""
        wanted = [s for s in splits if s in self.configured_splits()]
        paths = {s: self.data_path(s) for s in wanted}
        summaries = []
        for split, path in paths.items():
            limit = self.config.data.limit_for(split)
            self.splits[split] = self.read(path, limit, training=split == "train")
            used = f"; first {limit} used" if limit else ""
            summaries.append(f"{split}: {path} ({self.splits[split].summary()}{used})")
        return summaries

    # -- vocabularies and tensors --------------------------------------------------------------
    @abstractmethod
    def fit_vocab(self, train) -> dict:
        """Build the vocabularies (words, characters, labels, senses) from the train split; returns
        them as JSON-able state (``vocab.json`` of the run)."""

    @abstractmethod
    def restore_vocab(self, state: dict) -> None:
        """Take back what :meth:`fit_vocab` returned (a trained run being loaded)."""

    @abstractmethod
    def tensorise(self, split) -> None:
        """Ids for every example of ``split`` (once; batches only gather them)."""

    # -- model and batches ---------------------------------------------------------------------
    def uses_elmo(self) -> bool:
        return self.needs_elmo or self.config.model.elmo.enabled

    @abstractmethod
    def build_model(self, num_layers: int | None, elmo_dim: int | None) -> Head:
        """The head; ``num_layers``/``elmo_dim`` are ``None`` when the task runs without ELMo."""

    def batches(self, split, batch_size: int, rng: random.Random | None) -> list[list[int]]:
        """Index batches: length-sorted (little padding), shuffled when ``rng`` is given (training)."""
        return length_sorted_batches([len(t) for t in split.tokens], batch_size, rng)

    @abstractmethod
    def make_batch(self, split, indices: list[int]) -> dict[str, Any]:
        """The head's keyword inputs for the examples ``indices`` (gold labels included when known)."""

    def attach_features(self, split, source) -> None:
        """Keep the split's ELMo features (a :class:`~tasks.features.FeatureSource`)."""
        split.features = source

    # -- prediction and scoring ----------------------------------------------------------------
    @abstractmethod
    def decode(self, model: Head, batch: dict[str, Any]) -> list:
        """The predictions for the rows of ``batch``, in row order."""

    def predict(self, model: Head, split) -> list:
        """One prediction per example, in split order (``None`` for examples :meth:`batches` skips)."""
        model.eval()
        predictions: list = [None] * len(split)
        plan = self.batches(split, self.predict_batch_size, None)
        expect = getattr(getattr(split, "features", None), "expect", None)
        if expect is not None:  # live features embed the batches a window at a time (LiveFeatures)
            expect(plan)
        with torch.no_grad():
            for indices in plan:
                for i, prediction in zip(indices, self.decode(model, self.make_batch(split, indices))):
                    predictions[i] = prediction
        return predictions

    @abstractmethod
    def score(self, split, predictions: list) -> dict:
        """Scores (``self.metric`` among them) and ``"report"``: a text the run writes beside them."""

    @abstractmethod
    def write_predictions(self, split, predictions: list, path: Path) -> None:
        """Predictions beside the gold labels (the run directory's ``<split>.predictions.txt``)."""

    def write_output(self, split, predictions: list, path: Path) -> None:
        """What ``elmo-tasks predict`` writes. Default: as :meth:`write_predictions`."""
        self.write_predictions(split, predictions, path)

    def records(self, split, predictions: list) -> list[PredictedSentence]:
        """One :class:`~tasks.records.PredictedSentence` per sentence of ``split``: its text, offsets,
        tokens and the task's answer. ``predict --output X.jsonl`` writes them and the Python API
        returns them. Default: the task has no such output."""
        raise UsageError(f"task {self.name!r} has no per-sentence (JSON) output")
