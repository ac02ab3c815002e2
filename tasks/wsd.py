"""Word sense disambiguation on the frozen biLM: SemCor for training, Raganato et al.'s (2017)
framework for evaluation.

Two methods share the data handling, the features and the backoff:

* **nearest centroid** (the ELMo paper's method, no training):
  :func:`tasks.experiments.wsd_centroid.run_centroid_method`. The
  mean vector of every sense over SemCor under a *fixed* mix (layer k, average, top); a test
  instance takes the cosine-nearest centroid among the senses seen for its lemma + POS.
* **candidate classifier** (``task: wsd`` in the ordinary trainer): a learned ScalarMix, a linear
  map and a softmax over the WordNet candidates of the lemma + POS (tasks/heads/sense.py).

Both back off to WordNet's first sense for lemmas (lemma + POS) never seen in SemCor, and both
are scored by ``tasks/metrics/wsd.py`` per dataset, per POS and overall, next to the WordNet
first-sense baseline. Model selection uses semeval2007 (the usual WSD dev set); ``ALL`` (all
five sets, semeval2007 included, as the framework defines it) is the test split.

Features: the biLM runs over every sentence once per run, and :meth:`WsdTask.attach_features`
keeps only the vectors of the split's instances -- ``(instances, num_layers, dim)``
float16, about 350 MB for SemCor's 224,716 instances with a 256-wide 3-layer backbone -- so
epochs cost no backbone time at all. Multiword tokens (SemCor's ``Fulton_County_Grand_Jury``,
the evaluation sets' ``Air Force``) are split into words for the biLM, which never saw ``_``
joins, and the instance vector is the mean over its words.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from data.errors import DataFormatError
from data.tokenize import join_tokens
from data.warnings import report
from data.wordnet import DEBIAN_WORDNET_DIR, WordNet
from data.wsd import WsdCorpus, read_wsd
from elmo_core.scalar_mix import ScalarMix

from .base import Task, build_mix
from .config import DataConfig, ModelConfig, TaskConfig, positive, unit_interval
from .errors import UsageError
from .heads.sense import CandidateSenseClassifier, mix_instances
from .metrics.wsd import WsdReport, evaluate, invalid_gold_keys, write_answers
from .records import DisambiguatedSentence, SenseAnswer, probabilities

PAD_SENSE = "<pad>"
_MULTIWORD_SEPARATORS = re.compile(r"[_ ]+")


# -- data ---------------------------------------------------------------------------------------
def split_multiword(token: str) -> list[str]:
    """``Fulton_County_Grand_Jury`` / ``Air Force`` -> their words; a token of separators only stays whole."""
    words = [w for w in _MULTIWORD_SEPARATORS.split(token) if w]
    return words or [token]


def expand_sentence(tokens: list[str], split_multiwords: bool = True) -> tuple[list[str], list[tuple[int, int]]]:
    """The words the biLM reads and, for each original token, its ``[start, end)`` span of them."""
    words: list[str] = []
    spans = []
    for token in tokens:
        parts = split_multiword(token) if split_multiwords else [token]
        spans.append((len(words), len(words) + len(parts)))
        words.extend(parts)
    return words, spans


def group_key(lemma: str, pos: str) -> str:
    """One lemma + POS: the unit that has a candidate-sense list (a string, so vocab.json can hold it)."""
    return f"{lemma.lower()}#{pos}"


def locate_wsd_files(path: str | Path) -> tuple[Path, Path | None]:
    """``X.data.xml`` (or a folder ``X/`` holding it) and its ``X.gold.key.txt`` when present."""
    path = Path(path)
    xml = path / f"{path.name}.data.xml" if path.is_dir() else path
    if not xml.is_file():
        raise DataFormatError(path, None, "WSD data not found (expected X.data.xml, or a folder X/ holding it)")
    key = xml.with_name(xml.name.removesuffix(".data.xml") + ".gold.key.txt")
    return xml, key if key.is_file() else None


def first_sentences(corpus: WsdCorpus, limit: int | None) -> WsdCorpus:
    """The corpus cut to its first ``limit`` sentences (gold keys cut to match); smoke tests only."""
    if not limit or limit >= len(corpus.sentences):
        return corpus
    sentences = corpus.sentences[:limit]
    kept = {i.instance_id for s in sentences for i in s.instances}
    return WsdCorpus(
        corpus.name,
        corpus.xml_path,
        corpus.key_path,
        sentences,
        {k: v for k, v in corpus.gold.items() if k in kept},
        {k: v for k, v in corpus.gold_lines.items() if k in kept},
    )


class SenseChoice(NamedTuple):
    """The classifier's answer for one instance: the chosen key, and the candidates with their
    softmax probabilities (same order)."""

    key: str
    candidates: tuple[str, ...]
    probabilities: tuple[float, ...]


class InstanceRef(NamedTuple):
    """Where an instance's vector comes from: sentence index and ``[start, end)`` word span."""

    sentence: int
    start: int
    end: int
    instance_id: str
    lemma: str
    pos: str

    @property
    def group(self) -> str:
        return group_key(self.lemma, self.pos)


class InstanceFeatures:
    """All biLM layers at every instance: ``(instances, num_layers, dim)`` float16.

    ``batch(indices) -> (num_layers, batch, dim)`` float32 tensor.
    """

    def __init__(self, array: np.ndarray):
        self.array = array
        self.num_layers, self.dim = array.shape[1], array.shape[2]

    @classmethod
    def from_sentence_features(
        cls, features, instances: list[InstanceRef], lengths: list[int], chunk: int = 64
    ) -> InstanceFeatures:
        """Pick (and average over multiword spans) the instance vectors out of any sentence-level
        features object with ``batch(sentence_indices) -> (layers (L, B, T, D), mask)``, e.g.
        any :class:`~tasks.features.FeatureSource`."""
        by_sentence: dict[int, list[int]] = {}
        for index, ref in enumerate(instances):
            by_sentence.setdefault(ref.sentence, []).append(index)
        # Length-sorted chunks keep padding (and LiveFeatures' backbone work) small.
        order = sorted(by_sentence, key=lambda s: (lengths[s], s))
        chunks = [order[begin : begin + chunk] for begin in range(0, len(order), chunk)]
        expect = getattr(features, "expect", None)
        if expect is not None:  # live features embed the chunks a window at a time (LiveFeatures)
            expect(chunks)
        array = None
        for sentences in chunks:
            layers, _ = features.batch(sentences)
            layers = layers.float().numpy()
            if array is None:
                array = np.zeros((len(instances), layers.shape[0], layers.shape[-1]), dtype=np.float16)
            for row, sentence in enumerate(sentences):
                for index in by_sentence[sentence]:
                    ref = instances[index]
                    array[index] = layers[:, row, ref.start : ref.end].mean(axis=1)
        if array is None:
            num_layers, dim = getattr(features, "num_layers", 0), getattr(features, "dim", 0)
            array = np.zeros((0, num_layers, dim), dtype=np.float16)
        return cls(array)

    def batch(self, indices: list[int]) -> torch.Tensor:
        return torch.from_numpy(self.array[indices].astype(np.float32)).transpose(0, 1)

    def mixed(self, mix: ScalarMix, chunk: int = 8192) -> np.ndarray:
        """``(instances, dim)`` float32: every instance through a (fixed) mix."""
        parts = []
        with torch.no_grad():
            for begin in range(0, len(self.array), chunk):
                parts.append(
                    mix_instances(mix, self.batch(list(range(begin, min(begin + chunk, len(self.array)))))).numpy()
                )
        return np.concatenate(parts) if parts else np.zeros((0, mix.output_dim(self.dim)), dtype=np.float32)


@dataclass
class WsdSplit:
    """One WSD data file: the words the biLM reads, the instances, and (once tensorised) their
    candidate senses; ``features`` holds the instance vectors (:class:`InstanceFeatures`)."""

    corpus: WsdCorpus
    tokens: list[list[str]]
    instances: list[InstanceRef]
    candidates: list[list[int]] = field(default_factory=list)
    gold_positions: list[int] = field(default_factory=list)
    trainable: list[int] = field(default_factory=list)
    answerable: list[int] = field(default_factory=list)
    features: InstanceFeatures | None = None

    def __len__(self) -> int:
        return len(self.instances)

    def gold_keys(self, index: int) -> list[str]:
        return self.corpus.gold.get(self.instances[index].instance_id, [])

    def summary(self) -> str:
        multiword = sum(1 for s in self.corpus.sentences for t in s.tokens if len(split_multiword(t)) > 1)
        return (
            f"{len(self.corpus.sentences)} sentences, {sum(len(s.tokens) for s in self.corpus.sentences)} tokens "
            f"({multiword} multiword), {len(self.instances)} instances, "
            f"{'gold keys' if self.corpus.gold else 'no gold keys'}"
        )


def make_split(corpus: WsdCorpus, split_multiwords: bool = True) -> WsdSplit:
    tokens, instances = [], []
    for number, sentence in enumerate(corpus.sentences):
        words, spans = expand_sentence(sentence.tokens, split_multiwords)
        tokens.append(words)
        for inst in sentence.instances:
            start, end = spans[inst.position]
            instances.append(InstanceRef(number, start, end, inst.instance_id, inst.lemma, inst.pos))
    return WsdSplit(corpus, tokens, instances)


@dataclass
class WsdData(DataConfig):
    """The framework's ``X.data.xml`` files (or folders ``X/``); WordNet 3.0 for candidates and backoff."""

    split_multiwords: bool = True
    wordnet: str = str(DEBIAN_WORDNET_DIR)


@dataclass
class WsdModel(ModelConfig):
    sense_dim: int = field(default=64, metadata=positive)
    dropout: float = field(default=0.3, metadata=unit_interval)


@dataclass
class CentroidConfig:
    """Fixed mixes the nearest-centroid method scores: ``layer:K`` (0 = char CNN), ``average``, ``top``."""

    mixes: list[str] = field(default_factory=lambda: ["layer:1", "layer:2", "average"])

    def problems(self) -> list[str]:
        return [
            f"mixes: expected layer:K, average or top, found {m!r}"
            for m in self.mixes
            if not (m in ("average", "top") or re.fullmatch(r"layer:\d+", m))
        ]


@dataclass
class WsdConfig(TaskConfig):
    data: WsdData = field(default_factory=WsdData)
    model: WsdModel = field(default_factory=WsdModel)
    centroid: CentroidConfig = field(default_factory=CentroidConfig)

    def problems(self) -> list[str]:
        if not self.model.elmo.enabled:
            return ["model.elmo.enabled: WSD reads the ELMo layers only; it cannot run without them"]
        return []


# -- the task -----------------------------------------------------------------------------------
class WsdTask(Task):
    """The candidate classifier, plus what the centroid method shares with it (WordNet, backoff)."""

    name = "wsd"
    metric = "f1"
    metric_label = "F1"
    Config = WsdConfig
    default_config = "wsd.yaml"
    reduced = {"train.epochs": 2}
    cost = 3
    needs_elmo = True
    predict_batch_size = 512

    def __init__(self, config: WsdConfig):
        super().__init__(config)
        self.senses: list[str] = [PAD_SENSE]
        self.groups: dict[str, list[int]] = {}
        self._wordnet: WordNet | None = None
        self._first_sense: dict[str, str | None] = {}

    @property
    def wordnet(self) -> WordNet:
        if self._wordnet is None:
            self._wordnet = WordNet(self.config.data.wordnet)
        return self._wordnet

    # -- reading ---------------------------------------------------------------------------------
    def read(self, path: Path, limit: int | None = None, training: bool = False) -> WsdSplit:
        """``X.data.xml`` or a folder ``X/``; the gold key file beside it is read when present."""
        xml, key = locate_wsd_files(path)
        corpus = first_sentences(read_wsd(xml, key), limit)
        if corpus.gold:
            report(invalid_gold_keys(corpus, self.wordnet))  # a counted warning, an error under --strict
        return make_split(corpus, self.config.data.split_multiwords)

    def read_input(self, path: Path, input_format: str) -> tuple[WsdSplit, str]:
        """The framework's XML (gold keys optional); raw text cannot be disambiguated (instances
        need a lemma and a POS)."""
        if input_format in ("text", "tokenized"):
            raise DataFormatError(
                path,
                None,
                "WSD input must be the framework's X.data.xml (instances carry "
                "lemma and POS); raw text cannot be disambiguated",
            )
        return self.read(path), "wsd-xml"

    def unlabelled(self, sentences) -> WsdSplit:
        raise UsageError(
            "WSD needs the framework's X.data.xml (instances carry lemma and POS); raw text cannot be "
            "disambiguated (from Python: predict_file('X.data.xml'))"
        )

    # -- vocabularies and tensors ----------------------------------------------------------------
    def fit_vocab(self, train: WsdSplit) -> dict:
        """Candidate senses (WordNet order) of every lemma + POS seen in train; gold keys WordNet
        does not list for the lemma are added, so every training instance has its answer. Gold
        keys that are no WordNet 3.0 sense key at all (reported when the split was read) are left
        out: they would teach a sense no WordNet lemma has."""
        self.senses, self.groups = [PAD_SENSE], {}
        sense_ids: dict[str, int] = {}
        for index, ref in enumerate(train.instances):
            group = ref.group
            if group not in self.groups:
                self.groups[group] = []
                for key in self.wordnet.candidate_senses(ref.lemma, ref.pos):
                    self._add_candidate(group, key, sense_ids)
            for key in train.gold_keys(index):
                if self.wordnet.is_sense_key(key):
                    self._add_candidate(group, key, sense_ids)
        return {"senses": self.senses, "groups": self.groups}

    def _add_candidate(self, group: str, key: str, sense_ids: dict[str, int]) -> None:
        if key not in sense_ids:
            sense_ids[key] = len(self.senses)
            self.senses.append(key)
        if sense_ids[key] not in self.groups[group]:
            self.groups[group].append(sense_ids[key])

    def restore_vocab(self, state: dict) -> None:
        self.senses, self.groups = state["senses"], state["groups"]

    def tensorise(self, split: WsdSplit) -> None:
        """Candidate sense ids per instance (empty: lemma unseen in train -> backoff) and the
        position of its (first listed) gold sense among them (-1: none / unlabelled)."""
        split.candidates, split.gold_positions, split.trainable, split.answerable = [], [], [], []
        for index, ref in enumerate(split.instances):
            candidates = self.groups.get(ref.group, [])
            gold = set(split.gold_keys(index))
            position = next((p for p, s in enumerate(candidates) if self.senses[s] in gold), -1)
            split.candidates.append(candidates)
            split.gold_positions.append(position)
            if candidates:
                split.answerable.append(index)
            if len(candidates) > 1 and position >= 0:  # one candidate teaches the softmax nothing
                split.trainable.append(index)

    def attach_features(self, split: WsdSplit, source) -> None:
        """Keep only the instances' vectors (mean over a multiword's words), not the sentences'."""
        split.features = InstanceFeatures.from_sentence_features(
            source, split.instances, [len(t) for t in split.tokens]
        )

    # -- model and batches -----------------------------------------------------------------------
    def build_model(self, num_layers: int | None, elmo_dim: int | None) -> CandidateSenseClassifier:
        m = self.config.model
        return CandidateSenseClassifier(
            len(self.senses), build_mix(num_layers, m.elmo.mix), elmo_dim, sense_dim=m.sense_dim, dropout=m.dropout
        )

    def batches(self, split: WsdSplit, batch_size: int, rng: random.Random | None) -> list[list[int]]:
        """Training (``rng`` given): shuffled instances with at least two candidates and a gold one.
        Otherwise: every instance that has candidates, in order."""
        pool = list(split.trainable if rng is not None else split.answerable)
        if rng is not None:
            rng.shuffle(pool)
        return [pool[i : i + batch_size] for i in range(0, len(pool), batch_size)]

    def make_batch(self, split: WsdSplit, indices: list[int]) -> dict:
        widest = max(len(split.candidates[i]) for i in indices)
        candidates = torch.zeros(len(indices), widest, dtype=torch.long)  # (batch, max_candidates) sense ids
        mask = torch.zeros(len(indices), widest, dtype=torch.bool)  # (batch, max_candidates)
        for row, i in enumerate(indices):
            n = len(split.candidates[i])
            candidates[row, :n] = torch.tensor(split.candidates[i])
            mask[row, :n] = True
        gold = torch.tensor([split.gold_positions[i] for i in indices])  # (batch,) -1: none
        return {"layers": split.features.batch(indices), "candidates": candidates, "candidate_mask": mask, "gold": gold}

    # -- prediction and scoring ------------------------------------------------------------------
    def decode(self, model: CandidateSenseClassifier, batch: dict) -> list[SenseChoice]:
        """The best-scoring candidate of each instance (as :meth:`CandidateSenseClassifier.choose`),
        with the softmax probability of every candidate."""
        candidates, mask = batch["candidates"], batch["candidate_mask"]
        scores = model.scores(batch["layers"], candidates, mask)
        chosen = candidates.gather(1, scores.argmax(dim=-1).unsqueeze(1)).squeeze(1)
        probabilities = torch.softmax(scores.float(), dim=-1)
        return [
            SenseChoice(
                self.senses[int(sense)],
                tuple(self.senses[int(c)] for c in row[: int(n)]),
                tuple(p[: int(n)].tolist()),
            )
            for sense, row, n, p in zip(chosen, candidates, mask.sum(dim=1), probabilities)
        ]

    def first_sense(self, ref: InstanceRef) -> str | None:
        """WordNet's first sense of the lemma + POS (cached), or None for a lemma WordNet lacks."""
        if ref.group not in self._first_sense:
            self._first_sense[ref.group] = self.wordnet.first_sense(ref.lemma, ref.pos)
        return self._first_sense[ref.group]

    def with_backoff(self, split: WsdSplit, answers: dict[int, str | None]) -> dict[str, str]:
        """``{instance_id: key}`` in corpus order: ``answers`` (by instance index) where given,
        else WordNet's first sense; instances with neither get no answer."""
        result = {}
        for index, ref in enumerate(split.instances):
            key = answers.get(index) or self.first_sense(ref)
            if key is not None:
                result[ref.instance_id] = key
        return result

    def answer_keys(self, split: WsdSplit, predictions: list[SenseChoice | None]) -> dict[str, str]:
        """The classifier's predictions (``None`` where it had no candidates) with WordNet backoff."""
        return self.with_backoff(split, {i: p.key for i, p in enumerate(predictions) if p is not None})

    def first_sense_answers(self, split: WsdSplit) -> dict[str, str]:
        return self.with_backoff(split, {})

    def score(self, split: WsdSplit, predictions: list[SenseChoice | None]) -> dict:
        """P / R / F1 in percent overall, per dataset and per POS, and a markdown report that puts
        the WordNet first-sense baseline (same scorer) beside the system."""
        report = evaluate(split.corpus, self.answer_keys(split, predictions))
        baseline = evaluate(split.corpus, self.first_sense_answers(split))
        unseen = len(split) - len(split.answerable)
        return {
            **score_dict(report),
            "unseen_lemma_instances": unseen,
            "first_sense": score_dict(baseline),
            "report": format_report(
                {"system": report, "WordNet first sense": baseline},
                note=f"{unseen} of {len(split)} instances have a lemma + POS unseen in "
                f"training and take WordNet's first sense.",
            ),
        }

    def write_predictions(self, split: WsdSplit, predictions: list[SenseChoice | None], path: Path) -> None:
        """The framework's key format (``id key``), which Scorer.java reads too."""
        write_answers(path, self.answer_keys(split, predictions))

    def records(self, split: WsdSplit, predictions: list[SenseChoice | None]) -> list[DisambiguatedSentence]:
        """Every sentence of the corpus with its instances: the chosen key (the classifier's, else
        WordNet's first sense) and the classifier's probability of each candidate."""
        corpus = split.corpus.sentences
        _, sentences = join_tokens([s.tokens for s in corpus])
        positions = {i.instance_id: i.position for s in corpus for i in s.instances}
        answers: list[list[SenseAnswer]] = [[] for _ in corpus]
        for index, ref in enumerate(split.instances):
            choice, sentence = predictions[index], sentences[ref.sentence]
            token = sentence.tokens[positions[ref.instance_id]]
            key = choice.key if choice is not None else self.first_sense(ref)
            source = "classifier" if choice is not None else ("first sense" if key is not None else None)
            candidates = probabilities(choice.candidates, choice.probabilities) if choice is not None else {}
            answers[ref.sentence].append(
                SenseAnswer(
                    ref.instance_id, token.text, token.start, token.end, ref.lemma, ref.pos, key, source, candidates
                )
            )
        return [DisambiguatedSentence.of(s, instances=a) for s, a in zip(sentences, answers)]


def score_dict(report: WsdReport) -> dict:
    """JSON-able percentages: overall P/R/F1 plus F1 per dataset and per POS."""

    def one(s):
        return {
            "precision": 100 * s.precision,
            "recall": 100 * s.recall,
            "f1": 100 * s.f1,
            "answered": s.answered,
            "total": s.total,
        }

    return {
        **one(report.overall),
        "by_dataset": {k: one(v) for k, v in report.by_dataset.items()},
        "by_pos": {k: one(v) for k, v in report.by_pos.items()},
    }


def format_report(reports: dict[str, WsdReport], note: str = "") -> str:
    """One markdown table per system (P / R / F1 by dataset, POS and overall)."""
    parts = [f"### {name}\n\n{report.to_markdown()}" for name, report in reports.items()]
    return "\n\n".join(parts) + (f"\n\n{note}" if note else "") + "\n"


__all__ = [
    "WsdTask",
    "WsdConfig",
    "WsdSplit",
    "InstanceFeatures",
    "InstanceRef",
    "SenseChoice",
    "expand_sentence",
    "split_multiword",
    "score_dict",
    "format_report",
]
