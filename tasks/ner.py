"""The NER task: CoNLL files -> (cached ELMo layers + word/char inputs) -> BiLSTM-CRF -> conlleval."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data.conll import ConllDataset, read_conll, write_conll_predictions
from data.errors import DataFormatError
from data.tags import convert, normalize_scheme
from elmo_core.scalar_mix import ScalarMix

from .config import get_dotted
from .batching import batch_layers, length_sorted_batches, padded_token_ids
from .encoders import Vocab, normalise_word, token_encoder_from_config, token_vocabularies
from .heads.tagger import CrfTagger
from .metrics.spans import conlleval, format_conlleval_report, strict_f1

MAX_WORD_CHARS = 20


@dataclass
class Batch:
    indices: list[int]
    layers: torch.Tensor | None
    mask: torch.Tensor
    word_ids: torch.Tensor
    char_ids: torch.Tensor
    tags: torch.Tensor


def resolve_data_path(config: dict, split: str) -> Path:
    """``data.<split>`` joined to ``data.dir`` when relative; clear error when missing."""
    value = get_dotted(config, f"data.{split}")
    if value is None:
        raise DataFormatError("<config>", None, f"data.{split} is not set")
    path = Path(value)
    base = get_dotted(config, "data.dir")
    if not path.is_absolute() and base:
        path = Path(base) / path
    if not path.is_file():
        hint = get_dotted(config, "data.hint", "")
        raise DataFormatError(path, None, f"data file for split '{split}' not found. {hint}".strip())
    return path


class SplitData:
    """One split, tensorised once: word ids, char ids and tag ids per sentence."""

    def __init__(self, dataset: ConllDataset, tag_column: str):
        self.dataset = dataset
        self.tokens = dataset.tokens()
        self.tags = [s.columns[tag_column] for s in dataset.sentences]
        self.word_ids: list[list[int]] = []
        self.char_ids: list[list[list[int]]] = []
        self.tag_ids: list[list[int]] = []
        self.features = None

    def __len__(self) -> int:
        return len(self.tokens)


class NerTask:
    """Everything NER-specific: reading, vocabularies, model building, batching and scoring."""

    name = "ner"
    metric = "f1"

    def __init__(self, config: dict):
        self.config = config
        data = config.get("data", {})
        self.tag_column = data.get("tag_column", "ner")
        self.columns = data.get("columns", ["token", "pos", "chunk", "ner"])
        self.train_scheme = normalize_scheme(get_dotted(config, "model.tag_scheme", "BIOES"))
        self.splits: dict[str, SplitData] = {}
        self.file_scheme: str | None = None
        self.labels: list[str] = []
        self.words: Vocab | None = None
        self.chars: Vocab | None = None

    # -- data ----------------------------------------------------------------------------------
    def read_split(self, path: Path) -> SplitData:
        dataset = read_conll(path, columns=self.columns if isinstance(self.columns, int) else tuple(self.columns),
                             tag_column=self.tag_column, scheme=get_dotted(self.config, "data.scheme", "auto"))
        self.file_scheme = self.file_scheme or dataset.scheme
        return SplitData(dataset, self.tag_column)

    def load(self, splits=("train", "dev", "test")) -> list[str]:
        """Read the configured splits; returns one summary line per split."""
        summaries = []
        for split in splits:
            if get_dotted(self.config, f"data.{split}") is None:
                continue
            path = resolve_data_path(self.config, split)
            self.splits[split] = self.read_split(path)
            limit = get_dotted(self.config, f"data.max_{split}_sentences")
            if limit:  # reduced runs (e.g. the layer-weighting grid's quick mode) take a prefix
                self.splits[split].dataset.sentences = self.splits[split].dataset.sentences[: int(limit)]
                self.splits[split] = SplitData(self.splits[split].dataset, self.tag_column)
            used = f"; first {len(self.splits[split])} sentences used" if limit else ""
            summaries.append(f"{split}: {path} ({self.splits[split].dataset.summary()}, scheme "
                             f"{self.splits[split].dataset.scheme}{used})")
        return summaries

    def build_vocabularies(self) -> None:
        train = self.splits["train"]
        self.words, self.chars = token_vocabularies(self.config, train.tokens)
        tags = {t for s in train.tags for t in convert(s, self.file_scheme, self.train_scheme)}
        self.labels = sorted(tags, key=lambda t: (t == "O", t[2:], t))

    def vocab_state(self) -> dict:
        return {"labels": self.labels, "words": self.words.items, "chars": self.chars.items,
                "file_scheme": self.file_scheme}

    def restore_vocab(self, state: dict) -> None:
        self.labels, self.file_scheme = state["labels"], state["file_scheme"]
        self.words, self.chars = Vocab(state["words"]), Vocab(state["chars"])

    def tensorise(self, split: SplitData) -> None:
        lowercase = bool(get_dotted(self.config, "model.words.lowercase", True))
        label_index = {t: i for i, t in enumerate(self.labels)}
        split.word_ids = [[self.words.id(normalise_word(w, lowercase)) for w in s] for s in split.tokens]
        split.char_ids = [[[self.chars.id(ch) for ch in w[:MAX_WORD_CHARS]] for w in s] for s in split.tokens]
        split.tag_ids = [[label_index.get(t, label_index.get("O", 0)) for t in convert(s, self.file_scheme, self.train_scheme)]
                         for s in split.tags]

    # -- model ---------------------------------------------------------------------------------
    def uses_elmo(self) -> bool:
        return bool(get_dotted(self.config, "model.elmo.enabled", True))

    def build_model(self, num_layers: int | None, elmo_dim: int | None) -> CrfTagger:
        m = self.config.get("model", {})
        mix = None
        if self.uses_elmo():
            mix_cfg = m.get("elmo", {}).get("mix", {})
            mix = ScalarMix(num_layers, mode=mix_cfg.get("mode", "learned"), layer=mix_cfg.get("layer"),
                            do_layer_norm=mix_cfg.get("layer_norm", False), l2_coef=mix_cfg.get("l2", 0.0))
        tokens = token_encoder_from_config(self.config, self.words, self.chars, default_word_dim=50,
                                           default_char_filters=30)
        return CrfTagger(self.labels, self.train_scheme, mix, elmo_dim or 0, tokens,
                         hidden=int(m.get("hidden", 200)), lstm_layers=int(m.get("lstm_layers", 1)),
                         dropout=float(m.get("dropout", 0.5)),
                         elmo_dropout=float(get_dotted(self.config, "model.elmo.dropout", 0.5)))

    # -- batches -------------------------------------------------------------------------------
    def batches(self, split: SplitData, batch_size: int, rng: random.Random | None) -> list[list[int]]:
        """Length-sorted batches (little padding); shuffled batch order when ``rng`` is given."""
        return length_sorted_batches([len(t) for t in split.tokens], batch_size, rng)

    def make_batch(self, split: SplitData, indices: list[int]) -> Batch:
        word_ids, char_ids, mask = padded_token_ids(split.word_ids, split.char_ids, indices)
        tags = np.zeros(tuple(word_ids.shape), dtype=np.int64)
        for row, i in enumerate(indices):
            tags[row, : len(split.tag_ids[i])] = split.tag_ids[i]
        tags = torch.from_numpy(tags)
        layers = batch_layers(split.features, indices, mask)
        return Batch(indices, layers, mask, word_ids, char_ids, tags)

    def loss(self, model: CrfTagger, batch: Batch) -> torch.Tensor:
        return model.loss(batch.layers, batch.mask, batch.word_ids, batch.char_ids, batch.tags)

    # -- prediction and scoring ------------------------------------------------------------------
    def predict(self, model: CrfTagger, split: SplitData, batch_size: int = 64) -> list[list[str]]:
        """Predicted tags in the *file's* scheme (conlleval then compares like with like)."""
        model.eval()
        predictions: list[list[str] | None] = [None] * len(split)
        with torch.no_grad():
            for indices in self.batches(split, batch_size, None):
                batch = self.make_batch(split, indices)
                for i, tag_ids in zip(indices, model.decode(batch.layers, batch.mask, batch.word_ids, batch.char_ids)):
                    predictions[i] = convert([self.labels[t] for t in tag_ids], self.train_scheme, self.file_scheme)
        return predictions  # type: ignore[return-value]

    def score(self, split: SplitData, predictions: list[list[str]]) -> dict:
        result = conlleval(split.tags, predictions)
        gold2 = [convert(t, self.file_scheme, "IOB2") for t in split.tags]
        pred2 = [convert(t, self.file_scheme, "IOB2") for t in predictions]
        return {"f1": result.f1, "precision": result.precision, "recall": result.recall,
                "accuracy": result.accuracy, "strict_f1": strict_f1(gold2, pred2, "IOB2"),
                "per_type": {k: {"precision": v.precision, "recall": v.recall, "f1": v.f1, "gold": v.gold}
                             for k, v in sorted(result.per_type.items())},
                "report": format_conlleval_report(result)}

    def write_predictions(self, split: SplitData, predictions: list[list[str]], path: Path) -> None:
        write_conll_predictions(path, split.tokens, split.tags, predictions)
