"""The NER task: CoNLL files -> (ELMo layers + word/char inputs) -> BiLSTM-CRF -> conlleval."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from data.conll import ConllDataset, ConllStats, Sentence, format_conll_predictions, looks_like_conll, read_conll
from data.tags import SCHEMES, convert, extract_spans, normalize_scheme, split_tag
from data.tokenize import TextSentence
from data.warnings import Finding, brief_list, report
from elmo_core.io import atomic_write_text

from .base import Task, build_mix
from .batching import batch_layers, padded_token_ids
from .config import CharsConfig, DataConfig, ModelConfig, TaskConfig, WordsConfig, positive, unit_interval
from .encoders import Vocab, fit_token_inputs, token_encoder_from_config, token_ids
from .heads.tagger import CrfTagger
from .metrics.spans import conlleval, format_conlleval_report, strict_f1
from .records import Entity, EntitySentence, sentences_of

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
        self.sentences: list[TextSentence] | None = None  # text and offsets, when read from text

    def __len__(self) -> int:
        return len(self.tokens)

    def summary(self) -> str:
        return f"{self.dataset.summary()}, scheme {self.dataset.scheme}"


def unlabelled_split(sentences: list[TextSentence], tag_column: str, scheme: str | None) -> TaggingSplit:
    """Unlabelled sentences as a split whose gold tags are all ``O``; ``split.sentences`` keeps
    them (their text and offsets)."""
    rows = [Sentence(s.words, {tag_column: ["O"] * len(s.tokens)}, i + 1, None) for i, s in enumerate(sentences)]
    split = TaggingSplit(ConllDataset("<text>", rows, ConllStats(), scheme, tag_column, scheme), tag_column)
    split.sentences = sentences
    return split


def read_tagging_input(task: Task, path: Path, input_format: str, read=None) -> tuple[TaggingSplit, str]:
    """``conll`` (or ``labelled``): a CoNLL file (read by ``read(path)``, default ``task.read``);
    ``text``: raw text (split and tokenised by data/tokenize.py); ``tokenized``: one tokenised
    sentence per line; ``auto``: ``conll`` when the file has CoNLL's structure
    (:func:`data.conll.looks_like_conll`), ``text`` otherwise."""
    if input_format == "auto":
        input_format = "conll" if looks_like_conll(path) else "text"
    if input_format in ("labelled", "conll"):
        return (read or task.read)(path), "conll"
    return task.read_unlabelled(path, input_format), input_format


def split_scheme(split: TaggingSplit, default: str | None) -> str | None:
    """The scheme of the tags a split holds: its file's (detected or declared), else ``default``."""
    return split.dataset.output_scheme or split.dataset.scheme or default


def unseen_entity_types(split: TaggingSplit, known: set[str]) -> Finding:
    """The split's gold entities whose type the training data never had (a counted warning: the
    model cannot predict them, so each is a missed entity)."""
    finding = Finding(
        "unseen-entity-type",
        split.dataset.path,
        "entity of a type never seen in training",
        "entities of types never seen in training",
    )
    types: set[str] = set()
    for sentence, tokens, tags in zip(split.dataset.sentences, split.tokens, split.tags):
        for span in extract_spans(tags):
            if span.type not in known:
                types.add(span.type)
                finding.add(sentence.line + span.start, f"{span.type} {' '.join(tokens[span.start : span.end])!r}")
    if types:
        finding.hint = f"types {brief_list(sorted(types))}; the model cannot predict them"
    return finding


def entities_of(sentence: TextSentence, tags: list[str]) -> list[Entity]:
    """The entities that ``tags`` (any scheme, decoded as conlleval does) make in ``sentence``,
    with offsets into its input."""
    found = []
    for span in extract_spans(tags):
        first, last = sentence.tokens[span.start], sentence.tokens[span.end - 1]
        text = sentence.text[first.start - sentence.start : last.end - sentence.start]
        found.append(Entity(text, span.type, first.start, last.end))
    return found


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
    def read(
        self, path: Path, limit: int | None = None, training: bool = False, scheme: str | None = None
    ) -> TaggingSplit:
        """A CoNLL file in ``scheme`` (default ``data.scheme``, the configured files' scheme)."""
        data = self.config.data
        columns = data.columns if isinstance(data.columns, int) else tuple(data.columns)
        dataset = read_conll(path, columns=columns, tag_column=data.tag_column, scheme=scheme or data.scheme)
        self.file_scheme = self.file_scheme or dataset.scheme
        if limit:
            dataset.sentences = dataset.sentences[:limit]
        return TaggingSplit(dataset, data.tag_column)

    def read_input(self, path: Path, input_format: str) -> tuple[TaggingSplit, str]:
        """See :func:`read_tagging_input`. A labelled file given to ``evaluate`` / ``predict`` is read
        in its own scheme, detected (``data.scheme`` declares the configured files' scheme): CoNLL++
        in IOB2 for a run trained on CoNLL-2003's IOB1 is then scored tag for tag in IOB2."""
        return read_tagging_input(self, path, input_format, read=self._read_own_scheme)

    def _read_own_scheme(self, path: Path) -> TaggingSplit:
        split = self.read(path, scheme="auto")
        dataset = split.dataset
        if dataset.scheme == "IO" and self.file_scheme == "IOB1":
            # Only I- tags: IOB1 without two adjacent entities of one type (as IO it would merge them).
            dataset.scheme = dataset.output_scheme = "IOB1"
        return split

    def unlabelled(self, sentences: list[TextSentence]) -> TaggingSplit:
        return unlabelled_split(sentences, self.config.data.tag_column, self.file_scheme)

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
        scheme = split_scheme(split, self.file_scheme)
        split.tag_ids = [
            [label_index.get(t, outside) for t in convert(s, scheme, self.train_scheme)] for s in split.tags
        ]
        report(unseen_entity_types(split, {split_tag(t)[1] for t in self.labels if t != "O"}))

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

    def predict(self, model: CrfTagger, split: TaggingSplit) -> list[list[str]]:
        """:meth:`Task.predict`, with the tags written in the split's own scheme: a file in
        another scheme than the training file's (CoNLL++'s IOB2 for a run trained on CoNLL-2003's
        IOB1) gets its predictions, its scores (token accuracy compares tag with tag) and its
        outputs in its own scheme."""
        predictions = super().predict(model, split)
        scheme = split_scheme(split, self.file_scheme)
        if scheme == self.file_scheme:
            return predictions
        return [tags if tags is None else convert(tags, self.file_scheme, scheme) for tags in predictions]

    def score(self, split: TaggingSplit, predictions: list[list[str]]) -> dict:
        result = conlleval(split.tags, predictions)
        scheme = split_scheme(split, self.file_scheme)
        gold2 = [convert(t, scheme, "IOB2") for t in split.tags]
        pred2 = [convert(t, scheme, "IOB2") for t in predictions]
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

    def records(self, split: TaggingSplit, predictions: list[list[str]]) -> list[EntitySentence]:
        """Tokens, their tags (the run's file scheme) and the entities, offsets into the input."""
        return [
            EntitySentence.of(sentence, tags=list(tags), entities=entities_of(sentence, tags))
            for sentence, tags in zip(sentences_of(split), predictions)
        ]


__all__ = [
    "NerTask",
    "NerConfig",
    "NerModel",
    "ConllData",
    "TaggingSplit",
    "entities_of",
    "looks_like_conll",
    "read_tagging_input",
    "unlabelled_split",
]
