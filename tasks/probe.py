"""Syntactic probes on CoNLL-2003's 2nd and 3rd columns: POS tagging (accuracy) and chunking
(conlleval chunk F1) with a linear probe over the task's mix of frozen ELMo layers."""
from __future__ import annotations

import torch

from elmo_core.scalar_mix import ScalarMix

from .config import get_dotted
from .heads.probe import LinearProbe
from .metrics.spans import conlleval
from .ner import NerTask, SplitData


class ProbeTask(NerTask):
    """``task: pos`` (column ``pos``, accuracy) or ``task: chunk`` (column ``chunk``, chunk F1)."""

    def __init__(self, config: dict):
        super().__init__(config)
        self.name = config["task"]
        self.tag_column = self.name
        self.metric = "accuracy" if self.name == "pos" else "f1"

    def read_split(self, path):
        from data.conll import read_conll

        # The reader validates one column's tag scheme. POS labels (NNP, '(' ...) are no BIO
        # scheme, so the POS probe validates the NER column and reads POS as plain labels.
        checked = "chunk" if self.name == "chunk" else "ner"
        dataset = read_conll(path, columns=tuple(self.columns), tag_column=checked, scheme="auto")
        self.file_scheme = self.file_scheme or dataset.scheme
        return SplitData(dataset, self.tag_column)

    def build_vocabularies(self) -> None:
        from .encoders import Vocab

        # A linear probe reads only the frozen layers: no word or character vocabulary.
        self.words, self.chars = Vocab([]), Vocab([])
        self.labels = sorted({t for s in self.splits["train"].tags for t in s})

    def tensorise(self, split: SplitData) -> None:
        index = {t: i for i, t in enumerate(self.labels)}
        split.tag_ids = [[index.get(t, 0) for t in s] for s in split.tags]
        split.word_ids = [[0] * len(s) for s in split.tokens]
        split.char_ids = [[[0] for _ in s] for s in split.tokens]

    def uses_elmo(self) -> bool:
        return True

    def build_model(self, num_layers, elmo_dim) -> LinearProbe:
        mix_cfg = get_dotted(self.config, "model.elmo.mix", {}) or {}
        mix = ScalarMix(num_layers, mode=mix_cfg.get("mode", "learned"), layer=mix_cfg.get("layer"),
                        do_layer_norm=mix_cfg.get("layer_norm", False), l2_coef=mix_cfg.get("l2", 0.0))
        return LinearProbe(mix, elmo_dim, len(self.labels))

    def loss(self, model: LinearProbe, batch) -> torch.Tensor:
        return model.loss(batch.layers, batch.mask, batch.tags)

    def predict(self, model: LinearProbe, split: SplitData, batch_size: int = 128) -> list[list[str]]:
        model.eval()
        predictions = [None] * len(split)
        with torch.no_grad():
            for indices in self.batches(split, batch_size, None):
                batch = self.make_batch(split, indices)
                for i, ids in zip(indices, model.decode(batch.layers, batch.mask)):
                    predictions[i] = [self.labels[t] for t in ids]
        return predictions

    def score(self, split: SplitData, predictions) -> dict:
        result = conlleval(split.tags, predictions)
        scores = {"accuracy": result.accuracy}
        if self.name == "chunk":
            scores.update(f1=result.f1, precision=result.precision, recall=result.recall)
        scores["report"] = (f"{self.name}: token accuracy {result.accuracy:.2f}"
                            + (f", chunk F1 {result.f1:.2f}" if self.name == "chunk" else "") + "\n")
        return scores

