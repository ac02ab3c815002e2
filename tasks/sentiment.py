"""The sentiment task: SST trees (or a TSV file) -> (cached ELMo layers + word/char inputs) -> pooled classifier.

Task names ``sst5`` (five classes) and ``sst2`` (SST-2: neutral dropped, 0/1 -> negative,
3/4 -> positive; same as ``data.binary: true``). ``data.format: tsv`` reads any text/label TSV
through ``data/tsv.py`` instead (labels are whatever strings the file holds).

Phrase-level training (``data.phrases: true``) adds every labelled subtree of *train* as an
extra example (dev/test stay root sentences). It multiplies the training data ~20x (318,582
examples, 1.3M tokens for SST-5), so it is off by default; ``data.phrase_sample`` keeps a
random fraction of the non-root phrases and duplicates (same words, same label) are dropped.
Every phrase is embedded by the biLM on its own, as the paper's models saw them.

Scores: accuracy (the dev metric, in percent), macro-F1, per-class scores and the confusion
matrix (markdown in the report; ``write_predictions`` also draws it as a PNG beside the file).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import torch

from data.errors import DataFormatError
from data.sst import BINARY_LABEL_NAMES, LABEL_NAMES, SstExample, read_sst
from data.tokenize import TextSentence
from data.tsv import read_tsv
from data.warnings import brief_list, shorten
from elmo_core.io import atomic_write_text

from .base import Task, build_mix
from .batching import batch_layers, padded_token_ids
from .config import CharsConfig, DataConfig, ModelConfig, TaskConfig, WordsConfig, fraction, positive, unit_interval
from .encoders import Vocab, fit_token_inputs, token_encoder_from_config, token_ids
from .heads.classifier import PooledClassifier
from .metrics.classification import classification_report, plot_confusion_matrix
from .records import ClassifiedSentence, probabilities, sentences_of

# SST leaves are PTB-escaped; the biLM's corpus writes brackets and quotes plainly, so the
# ELMo input (and the word vocabulary) sees the plain forms. The files are never rewritten.
PTB_UNESCAPE = {
    "-LRB-": "(",
    "-RRB-": ")",
    "-LSB-": "[",
    "-RSB-": "]",
    "-LCB-": "{",
    "-RCB-": "}",
    "``": '"',
    "''": '"',
}


def unescape_ptb(token: str) -> str:
    """``-LRB-`` -> ``(``, ``` `` ``` -> ``"``, ``\\/`` -> ``/``, ``\\*`` -> ``*``."""
    token = PTB_UNESCAPE.get(token, token)
    return token.replace("\\/", "/").replace("\\*", "*")


_SST_NODE = re.compile(r"\d+\s")  # what follows every "(" of an SST tree: the node's label


class Classified(NamedTuple):
    """One sentence's prediction: the label and the probability of every label (``task.labels`` order)."""

    label: str
    probabilities: tuple[float, ...]


@dataclass
class SentimentSplit:
    """One split: token lists, gold label strings (``None`` when unlabelled) and where each came from."""

    path: str
    tokens: list[list[str]]
    labels: list[str] | None
    lines: list[int]
    is_root: list[bool] = field(default_factory=list)
    word_ids: list[list[int]] = field(default_factory=list)
    char_ids: list[list[list[int]]] = field(default_factory=list)
    label_ids: list[int] = field(default_factory=list)
    features: object = None
    sentences: list[TextSentence] | None = None  # text and offsets, when read from text

    def __len__(self) -> int:
        return len(self.tokens)

    def summary(self) -> str:
        roots = sum(self.is_root) if self.is_root else len(self)
        counts = Counter(self.labels or [])
        shown = dict(sorted(counts.items())[:10])
        more = f" and {len(counts) - 10:,} more" if len(counts) > 10 else ""
        return f"{len(self)} examples ({roots} sentences), {sum(map(len, self.tokens))} tokens" + (
            f", labels {shown}{more}" if counts else ""
        )


def sample_phrases(examples: list[SstExample], fraction: float, seed: int) -> list[SstExample]:
    """All root examples plus a seeded ``fraction`` of the distinct non-root (words, label) phrases."""
    seen = {(tuple(e.tokens), e.label) for e in examples if e.is_root}
    phrases = []
    for example in examples:
        key = (tuple(example.tokens), example.label)
        if not example.is_root and key not in seen:
            seen.add(key)
            phrases.append(example)
    if fraction < 1.0:
        phrases = random.Random(seed).sample(phrases, round(fraction * len(phrases)))
        phrases.sort(key=lambda e: e.line)  # keep file order: batches are made later anyway
    return [e for e in examples if e.is_root] + phrases


def label_sort_key(label: str):
    """Numeric labels in numeric order (``2`` before ``10``), other strings alphabetically."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


@dataclass
class SentimentData(DataConfig):
    """SST trees (``format: sst``) or a text/label TSV (``format: tsv``, read by data/tsv.py)."""

    format: Literal["sst", "tsv"] = "sst"
    binary: bool | None = None  # SST-2: drop neutral, 0/1 -> negative, 3/4 -> positive; default: the task's
    phrases: bool = False
    phrase_sample: float = field(default=1.0, metadata=fraction)
    phrase_seed: int = 0
    ptb_unescape: bool = True
    text_column: int | str | None = None  # a header name or 0-based index; null: the header's text column, else 0
    label_column: int | str | None = None  # likewise; null: the header's label column, else 1
    header: bool | Literal["auto"] = "auto"
    sep: str = "\t"


@dataclass
class SentimentModel(ModelConfig):
    words: WordsConfig = field(default_factory=lambda: WordsConfig(dim=0))
    chars: CharsConfig = field(default_factory=lambda: CharsConfig(filters=0))
    encoder: Literal["lstm", "none"] = "lstm"
    hidden: int = field(default=128, metadata=positive)
    lstm_layers: int = field(default=1, metadata=positive)
    pooling: list[Literal["mean", "max", "attention"]] | Literal["mean", "max", "attention"] = field(
        default_factory=lambda: ["mean", "max"]
    )
    mlp: list[int] = field(default_factory=lambda: [128])
    dropout: float = field(default=0.5, metadata=unit_interval)

    def problems(self) -> list[str]:
        return ["pooling: expected at least one of mean, max, attention"] if self.pooling == [] else []


@dataclass
class SentimentConfig(TaskConfig):
    data: SentimentData = field(default_factory=SentimentData)
    model: SentimentModel = field(default_factory=SentimentModel)


class SentimentTask(Task):
    """Everything sentence-classification-specific: reading, vocabularies, model, batching and scoring."""

    metric = "accuracy"
    metric_label = "accuracy"
    Config = SentimentConfig
    reduced = {"train.epochs": 3}
    cost = 4
    binary_by_default = False
    max_word_chars = 20

    def __init__(self, config: SentimentConfig):
        super().__init__(config)
        self.format = config.data.format
        self.binary = self.binary_by_default if config.data.binary is None else config.data.binary
        self.labels: list[str] = []
        self.label_names: list[str] = []
        self.words: Vocab | None = None
        self.chars: Vocab | None = None
        self.initial_words = None  # pretrained word embeddings for a new model (a restored run has its own)

    # -- reading ---------------------------------------------------------------------------------
    def read(self, path: Path, limit: int | None = None, training: bool = False) -> SentimentSplit:
        """A labelled file in the configured format; ``training`` enables phrase examples (SST only)."""
        path = Path(path)
        split = self._read_tsv(path) if self.format == "tsv" else self._read_trees(path, training)
        if limit:  # the first N sentences (trees or rows), with their phrases
            first_lines = sorted(set(split.lines))[:limit]
            split = self._subset(split, [i for i, line in enumerate(split.lines) if line <= first_lines[-1]])
        return split

    def _read_trees(self, path: Path, training: bool) -> SentimentSplit:
        data = self.config.data
        phrases = training and data.phrases
        examples = read_sst(path, phrases=phrases, binary=self.binary)
        if phrases:
            examples = sample_phrases(examples, data.phrase_sample, data.phrase_seed)
        tokens = [[unescape_ptb(t) for t in e.tokens] if data.ptb_unescape else list(e.tokens) for e in examples]
        return SentimentSplit(
            str(path),
            tokens,
            [str(e.label) for e in examples],
            [e.line for e in examples],
            [e.is_root for e in examples],
        )

    def _read_tsv(self, path: Path) -> SentimentSplit:
        # read_tsv raises DataFormatError naming FILE:LINE (empty text, missing label, bad UTF-8, ...).
        data = self.config.data
        examples = read_tsv(
            path,
            text_column=data.text_column,
            label_column=data.label_column,
            header=data.header,
            sep=data.sep,
            max_labels=2 if self.binary else 5,  # the task's classes: SST-2 has 2, SST-5 has 5
        )
        return SentimentSplit(
            str(path),
            [e.tokens for e in examples],
            [e.label for e in examples],
            [e.line for e in examples],
            [True] * len(examples),
        )

    @staticmethod
    def _subset(split: SentimentSplit, keep: list[int]) -> SentimentSplit:
        return SentimentSplit(
            split.path,
            [split.tokens[i] for i in keep],
            None if split.labels is None else [split.labels[i] for i in keep],
            [split.lines[i] for i in keep],
            [split.is_root[i] for i in keep],
        )

    def unlabelled(self, sentences: list[TextSentence]) -> SentimentSplit:
        """Unlabelled sentences (one example each), keeping their text and offsets."""
        split = SentimentSplit("<text>", [s.words for s in sentences], None, list(range(1, len(sentences) + 1)))
        split.is_root = [True] * len(sentences)
        split.sentences = sentences
        return split

    def read_input(self, path: Path, input_format: str) -> tuple[SentimentSplit, str]:
        """``text``: raw text (split and tokenised by data/tokenize.py; one example per sentence);
        ``tokenized``: one tokenised sentence per line; ``labelled`` (or ``conll``, its alias for
        every task): the configured labelled format (SST trees or TSV); ``auto``: the labelled format
        when the file has its structure, ``text`` otherwise."""
        if input_format == "auto":
            input_format = self.format if self._has_labelled_structure(path) else "text"
        if input_format in ("text", "tokenized"):
            return self.read_unlabelled(path, input_format), input_format
        return self.read(path), self.format

    def _has_labelled_structure(self, path: Path) -> bool:
        """SST: every one of the first lines is a bracketed tree with a label on each node
        (``(3 (2 a) (4 b))``; "(Reuters) said" is text). TSV: the first lines all have the same
        number (two or more) of separator-separated columns, none of them empty at the start (a
        tab-indented paragraph is text)."""
        from data.text import read_lines

        lines = []
        for _, line in read_lines(path):
            if line.strip():
                lines.append(line)
            if len(lines) >= 50:
                break
        if not lines:
            return False
        if self.format == "sst":
            trees = [line.strip() for line in lines]
            return all(
                tree.startswith("(")
                and tree.endswith(")")
                and tree.count("(") == tree.count(")")
                and all(_SST_NODE.match(tree, i + 1) for i, c in enumerate(tree) if c == "(")
                for tree in trees
            )
        sep = self.config.data.sep
        counts = {len(line.split(sep)) for line in lines}
        return len(counts) == 1 and counts.pop() >= 2 and not any(line.startswith(sep) for line in lines)

    # -- vocabularies and tensors ----------------------------------------------------------------
    def fit_vocab(self, train: SentimentSplit) -> dict:
        self.words, self.chars, self.initial_words, notes = fit_token_inputs(
            self.config.model.words, train.tokens, {name: split.tokens for name, split in self.splits.items()}
        )
        self.labels = sorted(set(train.labels or []), key=label_sort_key)
        if self.format == "sst":
            # SST has a fixed label set: keep every class even if a tiny subset lacks one.
            self.labels = [str(i) for i in range(2 if self.binary else 5)]
        self.label_names = self._display_names()
        state = {"labels": self.labels, "label_names": self.label_names}
        return {**state, "words": self.words.items, "chars": self.chars.items, **({"notes": notes} if notes else {})}

    def _display_names(self) -> list[str]:
        if self.format != "sst":
            return list(self.labels)
        return list(BINARY_LABEL_NAMES if self.binary else LABEL_NAMES)

    def restore_vocab(self, state: dict) -> None:
        self.labels, self.label_names = state["labels"], state["label_names"]
        self.words, self.chars = Vocab(state["words"]), Vocab(state["chars"])

    def tensorise(self, split: SentimentSplit) -> None:
        split.word_ids, split.char_ids = token_ids(
            split.tokens, self.words, self.chars, self.config.model.words, self.max_word_chars
        )
        split.label_ids = [] if split.labels is None else self._label_ids(split)

    def _label_ids(self, split: SentimentSplit) -> list[int]:
        index = {label: i for i, label in enumerate(self.labels)}
        ids = []
        for label, line in zip(split.labels, split.lines):
            if label not in index:
                raise DataFormatError(
                    split.path,
                    line,
                    f"label {shorten(label, 60)!r} never occurs in the training data "
                    f"(known labels: {brief_list(self.labels)})",
                )
            ids.append(index[label])
        return ids

    # -- model and batches -----------------------------------------------------------------------
    def build_model(self, num_layers: int | None, elmo_dim: int | None) -> PooledClassifier:
        m = self.config.model
        mix = build_mix(num_layers, m.elmo.mix) if self.uses_elmo() else None
        tokens = token_encoder_from_config(m.words, m.chars, self.words, self.chars, self.initial_words)
        return PooledClassifier(
            len(self.labels),
            mix,
            elmo_dim or 0,
            tokens,
            encoder=m.encoder,
            hidden=m.hidden,
            lstm_layers=m.lstm_layers,
            pooling=m.pooling,
            mlp=m.mlp,
            dropout=m.dropout,
            elmo_dropout=m.elmo.dropout,
        )

    def make_batch(self, split: SentimentSplit, indices: list[int]) -> dict:
        word_ids, char_ids, mask = padded_token_ids(split.word_ids, split.char_ids, indices)
        labels = torch.tensor([split.label_ids[i] for i in indices] if split.label_ids else [0] * len(indices))
        return {
            "layers": batch_layers(split.features, indices, mask),
            "mask": mask,
            "word_ids": word_ids,
            "char_ids": char_ids,
            "labels": labels,
        }

    # -- prediction and scoring ------------------------------------------------------------------
    def decode(self, model: PooledClassifier, batch: dict) -> list[Classified]:
        """One predicted label (a string of ``self.labels``, the logits' argmax) per row, with the
        softmax probability of every label."""
        logits = model.logits(batch["layers"], batch["mask"], batch["word_ids"], batch["char_ids"])
        ids, probabilities = logits.argmax(dim=-1), torch.softmax(logits.float(), dim=-1)
        return [Classified(self.labels[int(i)], tuple(p.tolist())) for i, p in zip(ids, probabilities)]

    def report(self, split: SentimentSplit, predictions: list[Classified]):
        if split.labels is None:
            raise DataFormatError(split.path, None, "cannot score unlabelled input")
        index = {label: i for i, label in enumerate(self.labels)}
        gold = self._label_ids(split)
        return classification_report(
            gold, [index[p.label] for p in predictions], range(len(self.labels)), self.label_names
        )

    def score(self, split: SentimentSplit, predictions: list[Classified]) -> dict:
        """accuracy / macro_f1 in percent, per-class scores, the confusion matrix and a markdown report."""
        result = self.report(split, predictions)
        return {
            "accuracy": 100 * result.accuracy,
            "macro_f1": 100 * result.macro_f1,
            "per_class": {name: {k: float(v) for k, v in row.items()} for name, row in result.per_class.iterrows()},
            "confusion": {"labels": list(self.label_names), "counts": result.confusion.to_numpy().tolist()},
            "report": result.to_markdown() + "\n",
        }

    def write_predictions(self, split: SentimentSplit, predictions: list[Classified], path: Path) -> None:
        """``line<TAB>gold<TAB>predicted<TAB>text`` rows, plus ``<stem>.confusion.png`` when labelled."""
        path = Path(path)
        rows = ["line\tgold\tpredicted\ttext\n"]
        for i, (tokens, predicted) in enumerate(zip(split.tokens, predictions)):
            gold = split.labels[i] if split.labels is not None else ""
            rows.append(f"{split.lines[i]}\t{gold}\t{predicted.label}\t{' '.join(tokens)}\n")
        atomic_write_text(path, "".join(rows))
        if split.labels is not None:
            png = path.with_name(path.name.split(".")[0] + ".confusion.png")
            plot_confusion_matrix(self.report(split, predictions).confusion, self.label_names, png)

    def write_output(self, split: SentimentSplit, predictions: list[Classified], path: Path) -> None:
        """``elmo-tasks predict`` output: ``label<TAB>label name<TAB>text`` per input sentence."""
        names = dict(zip(self.labels, self.label_names))
        atomic_write_text(
            Path(path),
            "".join(
                f"{p.label}\t{names.get(p.label, p.label)}\t{' '.join(tokens)}\n"
                for tokens, p in zip(split.tokens, predictions)
            ),
        )

    def records(self, split: SentimentSplit, predictions: list[Classified]) -> list[ClassifiedSentence]:
        """Each sentence's label, its display name and the probability of every label."""
        names = dict(zip(self.labels, self.label_names))
        return [
            ClassifiedSentence.of(
                sentence,
                label=p.label,
                label_name=names.get(p.label, p.label),
                probabilities=probabilities(self.labels, p.probabilities),
            )
            for sentence, p in zip(sentences_of(split), predictions)
        ]


class Sst5Task(SentimentTask):
    name = "sst5"
    default_config = "sst5.yaml"


class Sst2Task(SentimentTask):
    name = "sst2"
    default_config = "sst2.yaml"
    binary_by_default = True
