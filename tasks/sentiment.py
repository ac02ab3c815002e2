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
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from data.errors import DataFormatError
from data.sst import BINARY_LABEL_NAMES, LABEL_NAMES, SstExample, read_sst
from data.tsv import read_tsv
from elmo_core.scalar_mix import ScalarMix

from .config import get_dotted
from .batching import batch_layers, length_sorted_batches, padded_token_ids
from .encoders import Vocab, normalise_word, token_encoder_from_config, token_vocabularies
from .heads.classifier import PooledClassifier
from .metrics.classification import classification_report, plot_confusion_matrix
from .ner import resolve_data_path

MAX_WORD_CHARS = 20
FORMATS = ("sst", "tsv")

# SST leaves are PTB-escaped; the biLM's corpus writes brackets and quotes plainly, so the
# ELMo input (and the word vocabulary) sees the plain forms. The files are never rewritten.
PTB_UNESCAPE = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}",
                "``": '"', "''": '"'}


def unescape_ptb(token: str) -> str:
    """``-LRB-`` -> ``(``, ``` `` ``` -> ``"``, ``\\/`` -> ``/``, ``\\*`` -> ``*``."""
    token = PTB_UNESCAPE.get(token, token)
    return token.replace("\\/", "/").replace("\\*", "*")


@dataclass
class Batch:
    indices: list[int]
    layers: torch.Tensor | None
    mask: torch.Tensor
    word_ids: torch.Tensor
    char_ids: torch.Tensor
    labels: torch.Tensor


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

    def __len__(self) -> int:
        return len(self.tokens)

    def summary(self) -> str:
        roots = sum(self.is_root) if self.is_root else len(self)
        counts = Counter(self.labels or [])
        return (f"{len(self)} examples ({roots} sentences), {sum(map(len, self.tokens))} tokens"
                + (f", labels {dict(sorted(counts.items()))}" if counts else ""))


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


class SentimentTask:
    """Everything sentence-classification-specific: reading, vocabularies, model, batching and scoring."""

    metric = "accuracy"

    def __init__(self, config: dict):
        self.config = config
        self.name = config.get("task", "sst5")
        self.format = get_dotted(config, "data.format", "sst")
        if self.format not in FORMATS:
            raise DataFormatError("<config>", None, f"data.format must be one of {FORMATS}, got {self.format!r}")
        self.binary = bool(get_dotted(config, "data.binary", self.name == "sst2"))
        self.splits: dict[str, SentimentSplit] = {}
        self.labels: list[str] = []
        self.label_names: list[str] = []
        self.words: Vocab | None = None
        self.chars: Vocab | None = None

    # -- data ----------------------------------------------------------------------------------
    def read_split(self, path: Path, training: bool = False) -> SentimentSplit:
        """A labelled file in the configured format; ``training`` enables phrase examples (SST only)."""
        path = Path(path)
        if self.format == "tsv":
            split = self._read_tsv(path)
        else:
            split = self._read_trees(path, training)
        limit = get_dotted(self.config, "data.limit")
        if limit:  # smoke tests and benchmarks' --limit: the first N sentences (trees or rows)
            first_lines = sorted(set(split.lines))[: int(limit)]
            split = self._subset(split, [i for i, line in enumerate(split.lines) if line <= first_lines[-1]])
        return split

    def _read_trees(self, path: Path, training: bool) -> SentimentSplit:
        phrases = training and bool(get_dotted(self.config, "data.phrases", False))
        examples = read_sst(path, phrases=phrases, binary=self.binary)
        if phrases:
            examples = sample_phrases(examples, float(get_dotted(self.config, "data.phrase_sample", 1.0)),
                                      int(get_dotted(self.config, "data.phrase_seed", 0)))
        unescape = bool(get_dotted(self.config, "data.ptb_unescape", True))
        tokens = [[unescape_ptb(t) for t in e.tokens] if unescape else list(e.tokens) for e in examples]
        return SentimentSplit(str(path), tokens, [str(e.label) for e in examples], [e.line for e in examples],
                              [e.is_root for e in examples])

    def _read_tsv(self, path: Path) -> SentimentSplit:
        # read_tsv raises DataFormatError naming FILE:LINE (empty text, missing label, bad UTF-8, ...).
        examples = read_tsv(path, text_column=get_dotted(self.config, "data.text_column", 0),
                            label_column=get_dotted(self.config, "data.label_column", 1),
                            header=get_dotted(self.config, "data.header", "auto"),
                            sep=get_dotted(self.config, "data.sep", "\t"))
        return SentimentSplit(str(path), [e.tokens for e in examples], [e.label for e in examples],
                              [e.line for e in examples], [True] * len(examples))

    @staticmethod
    def _subset(split: SentimentSplit, keep: list[int]) -> SentimentSplit:
        return SentimentSplit(split.path, [split.tokens[i] for i in keep],
                              None if split.labels is None else [split.labels[i] for i in keep],
                              [split.lines[i] for i in keep], [split.is_root[i] for i in keep])

    def read_text(self, path: Path) -> SentimentSplit:
        """Unlabelled input: one whitespace-tokenised sentence per line."""
        from elmo_core.embed import read_sentence_file

        sentences = read_sentence_file(path)
        return SentimentSplit(str(path), sentences, None, list(range(1, len(sentences) + 1)), [True] * len(sentences))

    def read_input(self, path: Path, input_format: str) -> tuple[SentimentSplit, str]:
        """For ``elmo-tasks evaluate/predict``: ``text`` is raw sentences; any other format (``conll``
        is what ``evaluate`` asks for) means the task's labelled format; ``auto`` looks at the file."""
        if input_format == "auto":
            input_format = self._guess_format(path)
        if input_format == "text":
            return self.read_text(path), "text"
        return self.read_split(path), self.format

    def _guess_format(self, path: Path) -> str:
        first = next((line for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
                      if line.strip()), "")
        if self.format == "sst":
            return "sst" if first.lstrip().startswith("(") else "text"
        return "tsv" if get_dotted(self.config, "data.sep", "\t") in first else "text"

    def load(self, splits=("train", "dev", "test")) -> list[str]:
        """Read the configured splits; returns one summary line per split."""
        summaries = []
        for split in splits:
            if get_dotted(self.config, f"data.{split}") is None:
                continue
            path = resolve_data_path(self.config, split)
            self.splits[split] = self.read_split(path, training=split == "train")
            summaries.append(f"{split}: {path} ({self.splits[split].summary()})")
        return summaries

    def build_vocabularies(self) -> None:
        train = self.splits["train"]
        self.words, self.chars = token_vocabularies(self.config, train.tokens)
        self.labels = sorted(set(train.labels or []), key=label_sort_key)
        if self.format == "sst":
            # SST has a fixed label set: keep every class even if a tiny subset lacks one.
            self.labels = [str(i) for i in range(2 if self.binary else 5)]
        self.label_names = self._display_names()

    def _display_names(self) -> list[str]:
        if self.format != "sst":
            return list(self.labels)
        return list(BINARY_LABEL_NAMES if self.binary else LABEL_NAMES)

    def vocab_state(self) -> dict:
        return {"labels": self.labels, "label_names": self.label_names, "words": self.words.items,
                "chars": self.chars.items}

    def restore_vocab(self, state: dict) -> None:
        self.labels, self.label_names = state["labels"], state["label_names"]
        self.words, self.chars = Vocab(state["words"]), Vocab(state["chars"])

    def tensorise(self, split: SentimentSplit) -> None:
        lowercase = bool(get_dotted(self.config, "model.words.lowercase", True))
        split.word_ids = [[self.words.id(normalise_word(w, lowercase)) for w in s] for s in split.tokens]
        split.char_ids = [[[self.chars.id(ch) for ch in w[:MAX_WORD_CHARS]] for w in s] for s in split.tokens]
        split.label_ids = [] if split.labels is None else self._label_ids(split)

    def _label_ids(self, split: SentimentSplit) -> list[int]:
        index = {label: i for i, label in enumerate(self.labels)}
        ids = []
        for label, line in zip(split.labels, split.lines):
            if label not in index:
                raise DataFormatError(split.path, line, f"label {label!r} never occurs in the training data "
                                      f"(known labels: {self.labels})")
            ids.append(index[label])
        return ids

    # -- model ---------------------------------------------------------------------------------
    def uses_elmo(self) -> bool:
        return bool(get_dotted(self.config, "model.elmo.enabled", True))

    def build_model(self, num_layers: int | None, elmo_dim: int | None) -> PooledClassifier:
        m = self.config.get("model", {})
        mix = None
        if self.uses_elmo():
            mix_cfg = get_dotted(self.config, "model.elmo.mix", {}) or {}
            mix = ScalarMix(num_layers, mode=mix_cfg.get("mode", "learned"), layer=mix_cfg.get("layer"),
                            do_layer_norm=mix_cfg.get("layer_norm", False), l2_coef=mix_cfg.get("l2", 0.0))
        tokens = token_encoder_from_config(self.config, self.words, self.chars, default_word_dim=0,
                                           default_char_filters=0)
        return PooledClassifier(len(self.labels), mix, elmo_dim or 0, tokens,
                                encoder=m.get("encoder", "lstm"), hidden=int(m.get("hidden", 128)),
                                lstm_layers=int(m.get("lstm_layers", 1)), pooling=m.get("pooling", ["mean", "max"]),
                                mlp=[int(h) for h in m.get("mlp", [128])], dropout=float(m.get("dropout", 0.5)),
                                elmo_dropout=float(get_dotted(self.config, "model.elmo.dropout", 0.5)))

    # -- batches -------------------------------------------------------------------------------
    def batches(self, split: SentimentSplit, batch_size: int, rng: random.Random | None) -> list[list[int]]:
        """Length-sorted batches (little padding); shuffled batch order when ``rng`` is given."""
        return length_sorted_batches([len(t) for t in split.tokens], batch_size, rng)

    def make_batch(self, split: SentimentSplit, indices: list[int]) -> Batch:
        word_ids, char_ids, mask = padded_token_ids(split.word_ids, split.char_ids, indices)
        labels = torch.tensor([split.label_ids[i] for i in indices] if split.label_ids else [0] * len(indices))
        layers = batch_layers(split.features, indices, mask)
        return Batch(indices, layers, mask, word_ids, char_ids, labels)

    def loss(self, model: PooledClassifier, batch: Batch) -> torch.Tensor:
        return model.loss(batch.layers, batch.mask, batch.word_ids, batch.char_ids, batch.labels)

    # -- prediction and scoring ------------------------------------------------------------------
    def predict(self, model: PooledClassifier, split: SentimentSplit, batch_size: int = 64) -> list[str]:
        """One predicted label (a string of ``self.labels``) per example."""
        model.eval()
        predictions: list[str | None] = [None] * len(split)
        with torch.no_grad():
            for indices in self.batches(split, batch_size, None):
                batch = self.make_batch(split, indices)
                for i, label_id in zip(indices, model.predict(batch.layers, batch.mask, batch.word_ids, batch.char_ids)):
                    predictions[i] = self.labels[int(label_id)]
        return predictions  # type: ignore[return-value]

    def report(self, split: SentimentSplit, predictions: list[str]):
        if split.labels is None:
            raise DataFormatError(split.path, None, "cannot score unlabelled input")
        index = {label: i for i, label in enumerate(self.labels)}
        gold = self._label_ids(split)
        return classification_report(gold, [index[p] for p in predictions], range(len(self.labels)), self.label_names)

    def score(self, split: SentimentSplit, predictions: list[str]) -> dict:
        """accuracy / macro_f1 in percent, per-class scores, the confusion matrix and a markdown report."""
        result = self.report(split, predictions)
        return {"accuracy": 100 * result.accuracy, "macro_f1": 100 * result.macro_f1,
                "per_class": {name: {k: float(v) for k, v in row.items()} for name, row in result.per_class.iterrows()},
                "confusion": {"labels": list(self.label_names), "counts": result.confusion.to_numpy().tolist()},
                "report": result.to_markdown() + "\n"}

    def write_predictions(self, split: SentimentSplit, predictions: list[str], path: Path) -> None:
        """``line<TAB>gold<TAB>predicted<TAB>text`` rows, plus ``<stem>.confusion.png`` when labelled."""
        path = Path(path)
        with path.open("w", encoding="utf-8") as out:
            out.write("line\tgold\tpredicted\ttext\n")
            for i, (tokens, predicted) in enumerate(zip(split.tokens, predictions)):
                gold = split.labels[i] if split.labels is not None else ""
                out.write(f"{split.lines[i]}\t{gold}\t{predicted}\t{' '.join(tokens)}\n")
        if split.labels is not None:
            png = path.with_name(path.name.split(".")[0] + ".confusion.png")
            plot_confusion_matrix(self.report(split, predictions).confusion, self.label_names, png)

    def write_output(self, split: SentimentSplit, predictions: list[str], path: Path) -> None:
        """``elmo-tasks predict`` output: ``label<TAB>label name<TAB>text`` per input sentence."""
        names = dict(zip(self.labels, self.label_names))
        with Path(path).open("w", encoding="utf-8") as out:
            for tokens, predicted in zip(split.tokens, predictions):
                out.write(f"{predicted}\t{names.get(predicted, predicted)}\t{' '.join(tokens)}\n")
