"""The NER task: CoNLL files -> (ELMo layers + word/char inputs) -> BiLSTM-CRF -> conlleval."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from data.conll import ConllDataset, ConllStats, Sentence, format_conll_predictions, read_conll
from data.tags import SCHEMES, convert, normalize_scheme
from elmo_core.io import atomic_write_text

from .base import Task, build_mix
from .batching import batch_layers, padded_token_ids
from .config import CharsConfig, DataConfig, ModelConfig, TaskConfig, WordsConfig, positive, unit_interval
from .encoders import Vocab, fit_token_inputs, token_encoder_from_config, token_ids
from .heads.tagger import CrfTagger
from .metrics.spans import conlleval, format_conlleval_report, strict_f1

SCHEME_NAMES = (*SCHEMES, "BIO", "IOBES", "BIOSE")


def scheme_problems(key: str, value: str, allow_auto: bool) -> list[str]:
    if (allow_auto and value == "auto") or value.upper() in SCHEME_NAMES:
        return []
    return [f"{key}: expected one of {', '.join(('auto',) * allow_auto + SCHEMES)}, found {value!r}"]


@dataclass
class ConllData(DataConfig):
    """CoNLL column files. ``scheme``: the files' tag scheme (``auto`` detects it per file)."""

    columns: list[str] | int = field(default_factory=lambda: ["token", "pos", "chunk", "ner"])
    scheme: str = "auto"
    tag_column: str = "ner"

    def problems(self) -> list[str]:
        return super().problems() + scheme_problems("scheme", self.scheme, allow_auto=True)


@dataclass
class NerModel(ModelConfig):
    tag_scheme: str = "BIOES"
    words: WordsConfig = field(default_factory=WordsConfig)
    chars: CharsConfig = field(default_factory=CharsConfig)
    hidden: int = field(default=200, metadata=positive)
    lstm_layers: int = field(default=1, metadata=positive)
    dropout: float = field(default=0.5, metadata=unit_interval)

    def problems(self) -> list[str]:
        return scheme_problems("tag_scheme", self.tag_scheme, allow_auto=False)


@dataclass
class NerConfig(TaskConfig):
    data: ConllData = field(default_factory=ConllData)
    model: NerModel = field(default_factory=NerModel)


class TaggingSplit:
    """One CoNLL split, tensorised once: word ids, char ids and tag ids per sentence."""

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

    def summary(self) -> str:
        return f"{self.dataset.summary()}, scheme {self.dataset.scheme}"


def looks_like_conll(path: Path) -> bool:
    """A CoNLL file by its structure: ``-DOCSTART-``, or lines of 2+ columns whose last column is a
    tag (``O``, ``B-PER``, ``NNP``-free), each sentence ended by a blank line."""
    from data.text import read_lines

    rows = 0
    for _, line in read_lines(path):
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "-DOCSTART-":
            return True
        if len(fields) < 2 or not (fields[-1] == "O" or fields[-1][:2] in ("B-", "I-", "E-", "S-", "L-", "U-")):
            return False
        rows += 1
        if rows >= 50:
            break
    return rows > 0


def text_split(path: Path, tag_column: str, scheme: str | None) -> TaggingSplit:
    """Unlabelled input, one tokenised sentence per line, as a split whose gold tags are all ``O``."""
    from elmo_core.embed import read_sentence_file

    sentences = [
        Sentence(tokens, {tag_column: ["O"] * len(tokens)}, i + 1, None)
        for i, tokens in enumerate(read_sentence_file(path))
    ]
    return TaggingSplit(ConllDataset(str(path), sentences, ConllStats(), scheme, tag_column, scheme), tag_column)


class NerTask(Task):
    """Everything NER-specific: reading, vocabularies, model building, batching and scoring."""

    name = "ner"
    metric = "f1"
    metric_label = "F1"
    Config = NerConfig
    default_config = "ner_conll2003.yaml"
    reduced = {"data.limit": {"train": 5000, "dev": 1000}, "train.epochs": 4, "model.hidden": 128}
    cost = 10
    max_word_chars = 20

    def __init__(self, config: NerConfig):
        super().__init__(config)
        self.train_scheme = normalize_scheme(config.model.tag_scheme)
        self.file_scheme: str | None = None
        self.labels: list[str] = []
        self.words: Vocab | None = None
        self.chars: Vocab | None = None
        self.initial_words = None  # pretrained word embeddings for a new model (a restored run has its own)

    # -- reading ---------------------------------------------------------------------------------
    def read(self, path: Path, limit: int | None = None, training: bool = False) -> TaggingSplit:
        data = self.config.data
        columns = data.columns if isinstance(data.columns, int) else tuple(data.columns)
        dataset = read_conll(path, columns=columns, tag_column=data.tag_column, scheme=data.scheme)
        self.file_scheme = self.file_scheme or dataset.scheme
        if limit:
            dataset.sentences = dataset.sentences[:limit]
        return TaggingSplit(dataset, data.tag_column)

    def read_input(self, path: Path, input_format: str) -> tuple[TaggingSplit, str]:
        """``labelled``/``conll``: a CoNLL file; ``text``: one tokenised sentence per line (tags
        unknown); ``auto``: CoNLL when the file has CoNLL's structure, text otherwise."""
        if input_format == "auto":
            input_format = "conll" if looks_like_conll(path) else "text"
        if input_format in ("labelled", "conll"):
            return self.read(path), "conll"
        return text_split(path, self.config.data.tag_column, self.file_scheme), "text"

    # -- vocabularies and tensors ----------------------------------------------------------------
    def fit_vocab(self, train: TaggingSplit) -> dict:
        self.words, self.chars, self.initial_words, notes = fit_token_inputs(
            self.config.model.words, train.tokens, {name: split.tokens for name, split in self.splits.items()}
        )
        tags = {t for s in train.tags for t in convert(s, self.file_scheme, self.train_scheme)}
        self.labels = sorted(tags, key=lambda t: (t == "O", t[2:], t))
        state = {"labels": self.labels, "words": self.words.items, "chars": self.chars.items}
        return {**state, "file_scheme": self.file_scheme, **({"notes": notes} if notes else {})}

    def restore_vocab(self, state: dict) -> None:
        self.labels, self.file_scheme = state["labels"], state["file_scheme"]
        self.words, self.chars = Vocab(state["words"]), Vocab(state["chars"])

    def tensorise(self, split: TaggingSplit) -> None:
        split.word_ids, split.char_ids = token_ids(
            split.tokens, self.words, self.chars, self.config.model.words, self.max_word_chars
        )
        label_index = {t: i for i, t in enumerate(self.labels)}
        outside = label_index.get("O", 0)
        split.tag_ids = [
            [label_index.get(t, outside) for t in convert(s, self.file_scheme, self.train_scheme)] for s in split.tags
        ]

    # -- model and batches -----------------------------------------------------------------------
    def build_model(self, num_layers: int | None, elmo_dim: int | None) -> CrfTagger:
        m = self.config.model
        mix = build_mix(num_layers, m.elmo.mix) if self.uses_elmo() else None
        tokens = token_encoder_from_config(m.words, m.chars, self.words, self.chars, self.initial_words)
        return CrfTagger(
            self.labels,
            self.train_scheme,
            mix,
            elmo_dim or 0,
            tokens,
            hidden=m.hidden,
            lstm_layers=m.lstm_layers,
            dropout=m.dropout,
            elmo_dropout=m.elmo.dropout,
        )

    def make_batch(self, split: TaggingSplit, indices: list[int]) -> dict:
        word_ids, char_ids, mask = padded_token_ids(split.word_ids, split.char_ids, indices)
        tags = np.zeros(tuple(word_ids.shape), dtype=np.int64)  # (batch, time)
        for row, i in enumerate(indices):
            tags[row, : len(split.tag_ids[i])] = split.tag_ids[i]
        return {
            "layers": batch_layers(split.features, indices, mask),
            "mask": mask,
            "word_ids": word_ids,
            "char_ids": char_ids,
            "tags": torch.from_numpy(tags),
        }

    # -- prediction and scoring ------------------------------------------------------------------
    def decode(self, model: CrfTagger, batch: dict) -> list[list[str]]:
        """Predicted tags in the *file's* scheme (conlleval then compares like with like)."""
        best = model.decode(batch["layers"], batch["mask"], batch["word_ids"], batch["char_ids"])
        return [convert([self.labels[t] for t in tag_ids], self.train_scheme, self.file_scheme) for tag_ids in best]

    def score(self, split: TaggingSplit, predictions: list[list[str]]) -> dict:
        result = conlleval(split.tags, predictions)
        gold2 = [convert(t, self.file_scheme, "IOB2") for t in split.tags]
        pred2 = [convert(t, self.file_scheme, "IOB2") for t in predictions]
        return {
            "f1": result.f1,
            "precision": result.precision,
            "recall": result.recall,
            "accuracy": result.accuracy,
            "strict_f1": strict_f1(gold2, pred2, "IOB2"),
            "per_type": {
                k: {"precision": v.precision, "recall": v.recall, "f1": v.f1, "gold": v.gold}
                for k, v in sorted(result.per_type.items())
            },
            "report": format_conlleval_report(result),
        }

    def write_predictions(self, split: TaggingSplit, predictions: list[list[str]], path: Path) -> None:
        atomic_write_text(Path(path), format_conll_predictions(split.tokens, split.tags, predictions))

    def write_output(self, split: TaggingSplit, predictions: list[list[str]], path: Path) -> None:
        """``token tag`` lines, a blank line after each sentence."""
        atomic_write_text(
            Path(path),
            "".join(
                "\n".join(f"{t} {p}" for t, p in zip(tokens, tags)) + "\n\n"
                for tokens, tags in zip(split.tokens, predictions)
            ),
        )


__all__ = ["NerTask", "NerConfig", "NerModel", "ConllData", "TaggingSplit", "looks_like_conll", "text_split"]
