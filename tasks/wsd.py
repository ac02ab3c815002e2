"""Word sense disambiguation on the frozen biLM: SemCor for training, Raganato et al.'s (2017)
framework for evaluation.

Two methods share the data handling, the features and the backoff:

* **nearest centroid** (the ELMo paper's method, no training): :func:`run_centroid_method`. The
  mean vector of every sense over SemCor under a *fixed* mix (layer k, average, top); a test
  instance takes the cosine-nearest centroid among the senses seen for its lemma + POS.
* **candidate classifier** (``task: wsd`` in the ordinary trainer): a learned ScalarMix, a linear
  map and a softmax over the WordNet candidates of the lemma + POS (tasks/heads/sense.py).

Both back off to WordNet's first sense for lemmas (lemma + POS) never seen in SemCor, and both
are scored by ``tasks/metrics/wsd.py`` per dataset, per POS and overall, next to the WordNet
first-sense baseline. Model selection uses semeval2007 (the usual WSD dev set); ``ALL`` (all
five sets, semeval2007 included, as the framework defines it) is the test split.

Features: the biLM runs over every sentence once per run (the trainer's ``attach_features``),
and the split keeps only the vectors of its instances -- ``(instances, num_layers, dim)``
float16, about 350 MB for SemCor's 224,716 instances with a 256-wide 3-layer backbone -- so
epochs cost no backbone time at all. Multiword tokens (SemCor's ``Fulton_County_Grand_Jury``,
the evaluation sets' ``Air Force``) are split into words for the biLM, which never saw ``_``
joins, and the instance vector is the mean over its words.
"""
from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from data.errors import DataFormatError
from data.wordnet import DEBIAN_WORDNET_DIR, WordNet
from data.wsd import WsdCorpus, read_wsd
from elmo_core.scalar_mix import ScalarMix

from .config import get_dotted
from .heads.sense import CandidateSenseClassifier, SenseCentroids, mix_instances
from .metrics.wsd import WsdReport, evaluate, write_answers

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
    return WsdCorpus(corpus.name, corpus.xml_path, corpus.key_path, sentences,
                     {k: v for k, v in corpus.gold.items() if k in kept},
                     {k: v for k, v in corpus.gold_lines.items() if k in kept})


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
    def from_sentence_features(cls, features, instances: list[InstanceRef], lengths: list[int],
                               chunk: int = 64) -> "InstanceFeatures":
        """Pick (and average over multiword spans) the instance vectors out of any sentence-level
        features object with ``batch(sentence_indices) -> (layers (L, B, T, D), mask)``, e.g.
        :class:`~tasks.features.CachedFeatures` or :class:`~tasks.features.LiveFeatures`."""
        by_sentence: dict[int, list[int]] = {}
        for index, ref in enumerate(instances):
            by_sentence.setdefault(ref.sentence, []).append(index)
        # Length-sorted chunks keep padding (and LiveFeatures' backbone work) small.
        order = sorted(by_sentence, key=lambda s: (lengths[s], s))
        array = None
        for begin in range(0, len(order), chunk):
            sentences = order[begin : begin + chunk]
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
                parts.append(mix_instances(mix, self.batch(list(range(begin, min(begin + chunk, len(self.array)))))).numpy())
        return np.concatenate(parts) if parts else np.zeros((0, mix.output_dim(self.dim)), dtype=np.float32)


@dataclass
class WsdSplit:
    """One WSD data file: the words the biLM reads, the instances, and (once tensorised) their
    candidate senses. ``features`` accepts what the trainer attaches (sentence-level features)
    and keeps only the instance vectors."""

    corpus: WsdCorpus
    tokens: list[list[str]]
    instances: list[InstanceRef]
    candidates: list[list[int]] = field(default_factory=list)
    gold_positions: list[int] = field(default_factory=list)
    trainable: list[int] = field(default_factory=list)
    answerable: list[int] = field(default_factory=list)
    _features: InstanceFeatures | None = None

    def __len__(self) -> int:
        return len(self.instances)

    @property
    def features(self) -> InstanceFeatures | None:
        return self._features

    @features.setter
    def features(self, value) -> None:
        if value is None or isinstance(value, InstanceFeatures):
            self._features = value
        else:
            self._features = InstanceFeatures.from_sentence_features(value, self.instances,
                                                                     [len(t) for t in self.tokens])

    def gold_keys(self, index: int) -> list[str]:
        return self.corpus.gold.get(self.instances[index].instance_id, [])

    def summary(self) -> str:
        multiword = sum(1 for s in self.corpus.sentences for t in s.tokens if len(split_multiword(t)) > 1)
        return (f"{len(self.corpus.sentences)} sentences, {sum(len(s.tokens) for s in self.corpus.sentences)} tokens "
                f"({multiword} multiword), {len(self.instances)} instances, "
                f"{'gold keys' if self.corpus.gold else 'no gold keys'}")


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
class Batch:
    indices: list[int]
    layers: torch.Tensor          # (num_layers, batch, dim)
    candidates: torch.Tensor      # (batch, max_candidates) sense ids, 0-padded
    candidate_mask: torch.Tensor  # (batch, max_candidates) bool
    gold: torch.Tensor            # (batch,) position of a gold sense among the candidates (-1: none)


# -- the task -----------------------------------------------------------------------------------
class WsdTask:
    """Trainer protocol for the candidate classifier, plus what the centroid method shares with it."""

    name = "wsd"
    metric = "f1"

    def __init__(self, config: dict):
        self.config = config
        self.splits: dict[str, WsdSplit] = {}
        self.senses: list[str] = [PAD_SENSE]
        self.groups: dict[str, list[int]] = {}
        self._wordnet: WordNet | None = None
        self._first_sense: dict[str, str | None] = {}

    @property
    def wordnet(self) -> WordNet:
        if self._wordnet is None:
            self._wordnet = WordNet(get_dotted(self.config, "data.wordnet", DEBIAN_WORDNET_DIR))
        return self._wordnet

    # -- data ----------------------------------------------------------------------------------
    def resolve(self, split: str) -> Path:
        value = get_dotted(self.config, f"data.{split}")
        if value is None:
            raise DataFormatError("<config>", None, f"data.{split} is not set")
        path = Path(value)
        base = get_dotted(self.config, "data.dir")
        if not path.is_absolute() and base:
            path = Path(base) / path
        if not path.exists():
            hint = get_dotted(self.config, "data.hint", "")
            raise DataFormatError(path, None, f"WSD data for split '{split}' not found. {hint}".strip())
        return path

    def read_split(self, path: Path) -> WsdSplit:
        """``X.data.xml`` or a folder ``X/``; the gold key file beside it is read when present."""
        xml, key = locate_wsd_files(path)
        corpus = first_sentences(read_wsd(xml, key), get_dotted(self.config, "data.limit"))
        return make_split(corpus, bool(get_dotted(self.config, "data.split_multiwords", True)))

    def read_input(self, path: Path, input_format: str) -> tuple[WsdSplit, str]:
        """For ``elmo-tasks evaluate/predict``: the framework's XML (gold keys optional); raw text
        cannot be disambiguated (instances need a lemma and a POS)."""
        if input_format == "text":
            raise DataFormatError(path, None, "WSD input must be the framework's X.data.xml (instances carry "
                                  "lemma and POS); raw text cannot be disambiguated")
        return self.read_split(path), "wsd-xml"

    def load(self, splits=("train", "dev", "test")) -> list[str]:
        summaries = []
        for split in splits:
            if get_dotted(self.config, f"data.{split}") is None:
                continue
            path = self.resolve(split)
            self.splits[split] = self.read_split(path)
            summaries.append(f"{split}: {path} ({self.splits[split].summary()})")
        return summaries

    def build_vocabularies(self) -> None:
        """Candidate senses (WordNet order) of every lemma + POS seen in train; gold keys WordNet
        does not list for the lemma are added, so every training instance has its answer."""
        train = self.splits["train"]
        self.senses, self.groups = [PAD_SENSE], {}
        sense_ids: dict[str, int] = {}
        for index, ref in enumerate(train.instances):
            group = ref.group
            if group not in self.groups:
                self.groups[group] = []
                for key in self.wordnet.candidate_senses(ref.lemma, ref.pos):
                    self._add_candidate(group, key, sense_ids)
            for key in train.gold_keys(index):
                self._add_candidate(group, key, sense_ids)

    def _add_candidate(self, group: str, key: str, sense_ids: dict[str, int]) -> None:
        if key not in sense_ids:
            sense_ids[key] = len(self.senses)
            self.senses.append(key)
        if sense_ids[key] not in self.groups[group]:
            self.groups[group].append(sense_ids[key])

    def vocab_state(self) -> dict:
        return {"senses": self.senses, "groups": self.groups}

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

    # -- model ---------------------------------------------------------------------------------
    def uses_elmo(self) -> bool:
        return True

    def build_model(self, num_layers: int, elmo_dim: int) -> CandidateSenseClassifier:
        mix_cfg = get_dotted(self.config, "model.elmo.mix", {}) or {}
        mix = ScalarMix(num_layers, mode=mix_cfg.get("mode", "learned"), layer=mix_cfg.get("layer"),
                        do_layer_norm=mix_cfg.get("layer_norm", False), l2_coef=mix_cfg.get("l2", 0.0))
        return CandidateSenseClassifier(len(self.senses), mix, elmo_dim,
                                        sense_dim=int(get_dotted(self.config, "model.sense_dim", 64)),
                                        dropout=float(get_dotted(self.config, "model.dropout", 0.3)))

    # -- batches -------------------------------------------------------------------------------
    def batches(self, split: WsdSplit, batch_size: int, rng: random.Random | None) -> list[list[int]]:
        """Training (``rng`` given): shuffled instances with at least two candidates and a gold one.
        Otherwise: every instance that has candidates, in order."""
        pool = list(split.trainable if rng is not None else split.answerable)
        if rng is not None:
            rng.shuffle(pool)
        return [pool[i : i + batch_size] for i in range(0, len(pool), batch_size)]

    def make_batch(self, split: WsdSplit, indices: list[int]) -> Batch:
        if split.features is None:
            raise ValueError("WSD needs ELMo features: attach them to the split first")
        widest = max(len(split.candidates[i]) for i in indices)
        candidates = torch.zeros(len(indices), widest, dtype=torch.long)
        mask = torch.zeros(len(indices), widest, dtype=torch.bool)
        for row, i in enumerate(indices):
            n = len(split.candidates[i])
            candidates[row, :n] = torch.tensor(split.candidates[i])
            mask[row, :n] = True
        gold = torch.tensor([split.gold_positions[i] for i in indices])
        return Batch(indices, split.features.batch(indices), candidates, mask, gold)

    def loss(self, model: CandidateSenseClassifier, batch: Batch) -> torch.Tensor:
        return model.loss(batch.layers, batch.candidates, batch.candidate_mask, batch.gold)

    # -- prediction and scoring ------------------------------------------------------------------
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

    def predict(self, model: CandidateSenseClassifier, split: WsdSplit, batch_size: int = 512) -> dict[str, str]:
        model.eval()
        answers: dict[int, str | None] = {}
        with torch.no_grad():
            for indices in self.batches(split, batch_size, None):
                batch = self.make_batch(split, indices)
                for i, sense in zip(indices, model.choose(batch.layers, batch.candidates, batch.candidate_mask)):
                    answers[i] = self.senses[int(sense)]
        return self.with_backoff(split, answers)

    def first_sense_answers(self, split: WsdSplit) -> dict[str, str]:
        return self.with_backoff(split, {})

    def score(self, split: WsdSplit, predictions: dict[str, str]) -> dict:
        """P / R / F1 in percent overall, per dataset and per POS, and a markdown report that puts
        the WordNet first-sense baseline (same scorer) beside the system."""
        report = evaluate(split.corpus, predictions)
        baseline = evaluate(split.corpus, self.first_sense_answers(split))
        unseen = len(split) - len(split.answerable)
        return {**score_dict(report), "unseen_lemma_instances": unseen,
                "first_sense": score_dict(baseline),
                "report": format_report({"system": report, "WordNet first sense": baseline},
                                        note=f"{unseen} of {len(split)} instances have a lemma + POS unseen in "
                                             f"training and take WordNet's first sense.")}

    def write_predictions(self, split: WsdSplit, predictions: dict[str, str], path: Path) -> None:
        """The framework's key format (``id key``), which Scorer.java reads too."""
        write_answers(path, predictions)

    write_output = write_predictions


def score_dict(report: WsdReport) -> dict:
    """JSON-able percentages: overall P/R/F1 plus F1 per dataset and per POS."""
    def one(s):
        return {"precision": 100 * s.precision, "recall": 100 * s.recall, "f1": 100 * s.f1,
                "answered": s.answered, "total": s.total}

    return {**one(report.overall), "by_dataset": {k: one(v) for k, v in report.by_dataset.items()},
            "by_pos": {k: one(v) for k, v in report.by_pos.items()}}


def format_report(reports: dict[str, WsdReport], note: str = "") -> str:
    """One markdown table per system (P / R / F1 by dataset, POS and overall)."""
    parts = [f"### {name}\n\n{report.to_markdown()}" for name, report in reports.items()]
    return "\n\n".join(parts) + (f"\n\n{note}" if note else "") + "\n"


# -- the nearest-centroid method ----------------------------------------------------------------
def fixed_mix(spec: str, num_layers: int) -> ScalarMix:
    """``layer:K`` (single layer K; 0 = the char CNN), ``average``, ``top`` (the last layer)."""
    if spec.startswith("layer:"):
        return ScalarMix(num_layers, mode="single", layer=int(spec.split(":", 1)[1]))
    if spec in ("average", "top"):
        return ScalarMix(num_layers, mode=spec)
    raise ValueError(f"unknown fixed mix {spec!r} (expected layer:K, average or top)")


def fit_centroids(task: WsdTask, mix: ScalarMix) -> SenseCentroids:
    """Per-sense means of the train split's instance vectors under ``mix`` (first gold key each)."""
    train = task.splits["train"]
    labelled = [i for i in range(len(train)) if train.gold_keys(i)]
    vectors = train.features.mixed(mix)[labelled]
    return SenseCentroids.fit(vectors, [train.gold_keys(i)[0] for i in labelled],
                              [train.instances[i].group for i in labelled])


def centroid_answers(task: WsdTask, centroids: SenseCentroids, split: WsdSplit, mix: ScalarMix) -> dict[str, str]:
    """Nearest centroid for lemmas seen in train, WordNet's first sense otherwise."""
    nearest = centroids.nearest(split.features.mixed(mix), [ref.group for ref in split.instances])
    return task.with_backoff(split, dict(enumerate(nearest)))


def semcor_mfs_answers(task: WsdTask, centroids: SenseCentroids, split: WsdSplit) -> dict[str, str]:
    """The sense seen most often in train for the lemma + POS (WordNet first sense when unseen)."""
    frequent = centroids.most_frequent([ref.group for ref in split.instances])
    return task.with_backoff(split, dict(enumerate(frequent)))


def prepare_task(config: dict, progress: bool = True, log=print, feature_cache: dict | None = None,
                 backbone_cache: dict | None = None) -> tuple[WsdTask, dict]:
    """A loaded WSD task with instance features on every split; returns it and a timings dict.

    This is the trainer's own preparation (same reading, same ``attach_features``). Passing the
    same ``feature_cache`` / ``backbone_cache`` dicts to later ``Trainer`` runs of this process
    lets them reuse these features instead of embedding SemCor again.
    """
    from .trainer import attach_features, backbone_identity, load_backbone

    task = WsdTask(config)
    for line in task.load():
        log(line)
    started = time.perf_counter()
    task.build_vocabularies()
    for split in task.splits.values():
        task.tensorise(split)
    vocab_seconds = round(time.perf_counter() - started, 1)
    identity = backbone_identity(config)
    bilm = (backbone_cache or {}).get(identity) or load_backbone(config)
    if backbone_cache is not None:
        backbone_cache[identity] = bilm
    log(f"backbone: {identity} ({bilm.num_layers} layers x {bilm.output_dim})")
    if feature_cache is None:
        features = attach_features(task, bilm, list(task.splits), progress)
    else:
        features = attach_features(task, bilm, list(task.splits), progress, feature_cache, identity)
    return task, {"features_seconds": features, "vocab_seconds": vocab_seconds,
                  "num_layers": bilm.num_layers, "dim": bilm.output_dim, "backbone": identity}


def score_system(task: WsdTask, answer, name: str, out_dir: Path | None) -> tuple[dict, dict[str, WsdReport]]:
    """``answer(split) -> {instance_id: key}`` scored on the dev and test splits (answers written to
    ``out_dir`` when given); returns ``({split: scores}, {split: report})``."""
    scores, reports = {}, {}
    for split_name in ("dev", "test"):
        if split_name in task.splits:
            split = task.splits[split_name]
            answers = answer(split)
            reports[split_name] = evaluate(split.corpus, answers)
            scores[split_name] = score_dict(reports[split_name])
            _write_answers(out_dir, name, split_name, answers)
    return scores, reports


def run_centroid_method(task: WsdTask, mixes: Iterable[str], out_dir: Path | None = None, log=print) -> dict:
    """Score every fixed mix (and the two frequency baselines) on the dev and test splits.

    Returns ``{system: {split: scores}}``; with ``out_dir``, also writes each system's answers
    (``<system>.<split>.key.txt``), markdown reports and ``results.json`` there.
    """
    num_layers = task.splits["train"].features.num_layers
    results: dict[str, dict] = {}
    reports: dict[str, dict[str, WsdReport]] = {}
    centroids = None
    for spec in mixes:
        started = time.perf_counter()
        mix = fixed_mix(spec, num_layers)
        centroids = fit_centroids(task, mix)
        name = f"centroid {spec}"
        results[name], reports[name] = score_system(
            task, lambda split: centroid_answers(task, centroids, split, mix), name, out_dir)
        results[name]["seconds"] = round(time.perf_counter() - started, 1)
        log(f"{name}: " + ", ".join(f"{s} F1 {results[name][s]['f1']:.1f}" for s in ("dev", "test") if s in results[name]))
    baselines = {"WordNet first sense": task.first_sense_answers}
    if centroids is not None:  # sense counts do not depend on the mix: any fitted centroids will do
        baselines["SemCor most frequent sense"] = lambda split: semcor_mfs_answers(task, centroids, split)
    for name, answer in baselines.items():
        results[name], reports[name] = score_system(task, answer, name, out_dir)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        for split_name in ("dev", "test"):
            tables = {name: r[split_name] for name, r in reports.items() if split_name in r}
            if tables:
                (out_dir / f"{split_name}.report.md").write_text(format_report(tables))
    return results


def _write_answers(out_dir: Path | None, system: str, split: str, answers: dict[str, str]) -> None:
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_answers(out_dir / f"{system.replace(' ', '_').replace(':', '')}.{split}.key.txt", answers)


__all__ = ["WsdTask", "WsdSplit", "InstanceFeatures", "InstanceRef", "expand_sentence", "split_multiword",
           "fixed_mix", "fit_centroids", "centroid_answers", "semcor_mfs_answers", "prepare_task",
           "run_centroid_method", "score_system"]
