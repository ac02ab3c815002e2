"""Syntactic probes on CoNLL-2003's 2nd and 3rd columns: POS tagging (accuracy) and chunking
(conlleval chunk F1) with a linear probe over the task's mix of frozen ELMo layers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from data.conll import format_conll_predictions, read_conll
from data.tokenize import TextSentence
from data.warnings import Finding, report
from elmo_core.io import atomic_write_text

from .base import Task, build_mix
from .batching import batch_layers
from .config import ModelConfig, TaskConfig
from .heads.probe import LinearProbe
from .metrics.spans import conlleval
from .ner import ConllData, TaggingSplit, read_tagging_input, unlabelled_split
from .records import TaggedSentence, sentences_of


@dataclass
class ProbeConfig(TaskConfig):
    data: ConllData = field(default_factory=ConllData)
    model: ModelConfig = field(default_factory=ModelConfig)

    def problems(self) -> list[str]:
        if not self.model.elmo.enabled:
            return ["model.elmo.enabled: a probe reads the ELMo layers only; it cannot run without them"]
        return []


def unseen_labels(split: TaggingSplit, known: dict[str, int], column: str) -> Finding:
    """Gold labels of ``split`` that training never had (the probe cannot predict them)."""
    finding = Finding(
        "unseen-label",
        split.dataset.path,
        f"{column} label never seen in training",
        f"{column} labels never seen in training",
    )
    for sentence, tokens, tags in zip(split.dataset.sentences, split.tokens, split.tags):
        for position, tag in enumerate(tags):
            if tag not in known:
                finding.add(sentence.line + position, f"{tag!r} on {tokens[position]!r}")
    return finding


class ProbeTask(Task):
    """A linear probe over one CoNLL column; ``column`` names it, the subclasses pick it."""

    column: str
    Config = ProbeConfig
    needs_elmo = True
    predict_batch_size = 128
    reduced = {"data.limit": {"train": 3000, "dev": 1000}, "train.epochs": 2}

    def read(self, path: Path, limit: int | None = None, training: bool = False) -> TaggingSplit:
        # The reader validates one column's tag scheme. POS labels (NNP, '(' ...) are no BIO
        # scheme, so the POS probe validates the NER column and reads POS as plain labels.
        checked = "chunk" if self.column == "chunk" else "ner"
        dataset = read_conll(path, columns=tuple(self.config.data.columns), tag_column=checked, scheme="auto")
        if limit:
            dataset.sentences = dataset.sentences[:limit]
        return TaggingSplit(dataset, self.column)

    def read_input(self, path: Path, input_format: str) -> tuple[TaggingSplit, str]:
        return read_tagging_input(self, path, input_format)

    def unlabelled(self, sentences: list[TextSentence]) -> TaggingSplit:
        return unlabelled_split(sentences, self.column, None)

    def fit_vocab(self, train: TaggingSplit) -> dict:
        # A linear probe reads only the frozen layers: no word or character vocabulary.
        self.labels = sorted({t for s in train.tags for t in s})
        return {"labels": self.labels}

    def restore_vocab(self, state: dict) -> None:
        self.labels = state["labels"]

    def tensorise(self, split: TaggingSplit) -> None:
        index = {t: i for i, t in enumerate(self.labels)}
        split.tag_ids = [[index.get(t, 0) for t in s] for s in split.tags]
        if split.sentences is None:  # labelled: a gold label training never had is a counted warning
            report(unseen_labels(split, index, self.column))

    def build_model(self, num_layers: int | None, elmo_dim: int | None) -> LinearProbe:
        return LinearProbe(build_mix(num_layers, self.config.model.elmo.mix), elmo_dim, len(self.labels))

    def make_batch(self, split: TaggingSplit, indices: list[int]) -> dict:
        lengths = [len(split.tokens[i]) for i in indices]
        tags = np.zeros((len(indices), max(lengths)), dtype=np.int64)  # (batch, time)
        mask = np.zeros((len(indices), max(lengths)), dtype=bool)  # (batch, time)
        for row, i in enumerate(indices):
            tags[row, : lengths[row]] = split.tag_ids[i]
            mask[row, : lengths[row]] = True
        mask = torch.from_numpy(mask)
        return {"layers": batch_layers(split.features, indices, mask), "mask": mask, "tags": torch.from_numpy(tags)}

    def decode(self, model: LinearProbe, batch: dict) -> list[list[str]]:
        return [[self.labels[t] for t in ids] for ids in model.decode(batch["layers"], batch["mask"])]

    def score(self, split: TaggingSplit, predictions: list[list[str]]) -> dict:
        result = conlleval(split.tags, predictions)
        scores = {"accuracy": result.accuracy}
        if self.column == "chunk":
            scores.update(f1=result.f1, precision=result.precision, recall=result.recall)
        scores["report"] = (
            f"{self.name}: token accuracy {result.accuracy:.2f}"
            + (f", chunk F1 {result.f1:.2f}" if self.column == "chunk" else "")
            + "\n"
        )
        return scores

    def write_predictions(self, split: TaggingSplit, predictions: list[list[str]], path: Path) -> None:
        atomic_write_text(Path(path), format_conll_predictions(split.tokens, split.tags, predictions))

    def records(self, split: TaggingSplit, predictions: list[list[str]]) -> list[TaggedSentence]:
        return [TaggedSentence.of(s, tags=list(tags)) for s, tags in zip(sentences_of(split), predictions)]


class PosProbeTask(ProbeTask):
    name = "pos"
    column = "pos"
    metric = "accuracy"
    metric_label = "accuracy"
    default_config = "probe_pos.yaml"


class ChunkProbeTask(ProbeTask):
    name = "chunk"
    column = "chunk"
    metric = "f1"
    metric_label = "chunk F1"
    default_config = "probe_chunk.yaml"
