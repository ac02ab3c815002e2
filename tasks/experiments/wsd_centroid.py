"""The ELMo paper's WSD method, no training: the mean vector of every sense over SemCor under a
*fixed* mix (layer k, average, top); a test instance takes the cosine-nearest centroid among the
senses seen for its lemma + POS, with WordNet's first sense for lemmas never seen. Scored beside
the WordNet first-sense and SemCor most-frequent-sense baselines by the framework's scorer."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable
from pathlib import Path

from elmo_core.io import atomic_write_text
from elmo_core.scalar_mix import ScalarMix

from ..errors import UsageError
from ..features import attach_features, backbone_identity, load_backbone
from ..heads.sense import SenseCentroids
from ..metrics.wsd import WsdReport, evaluate, write_answers
from ..wsd import WsdConfig, WsdSplit, WsdTask, format_report, score_dict


def fixed_mix(spec: str, num_layers: int) -> ScalarMix:
    """``layer:K`` (single layer K; 0 = the char CNN), ``average``, ``top`` (the last layer)."""
    if spec.startswith("layer:"):
        return ScalarMix(num_layers, mode="single", layer=int(spec.split(":", 1)[1]))
    if spec in ("average", "top"):
        return ScalarMix(num_layers, mode=spec)
    raise UsageError(f"unknown fixed mix {spec!r} (expected layer:K, average or top)")


def fit_centroids(task: WsdTask, mix: ScalarMix) -> SenseCentroids:
    """Per-sense means of the train split's instance vectors under ``mix`` (first gold key each)."""
    train = task.splits["train"]
    labelled = [i for i in range(len(train)) if train.gold_keys(i)]
    vectors = train.features.mixed(mix)[labelled]
    return SenseCentroids.fit(
        vectors, [train.gold_keys(i)[0] for i in labelled], [train.instances[i].group for i in labelled]
    )


def centroid_answers(task: WsdTask, centroids: SenseCentroids, split: WsdSplit, mix: ScalarMix) -> dict[str, str]:
    """Nearest centroid for lemmas seen in train, WordNet's first sense otherwise."""
    nearest = centroids.nearest(split.features.mixed(mix), [ref.group for ref in split.instances])
    return task.with_backoff(split, dict(enumerate(nearest)))


def semcor_mfs_answers(task: WsdTask, centroids: SenseCentroids, split: WsdSplit) -> dict[str, str]:
    """The sense seen most often in train for the lemma + POS (WordNet first sense when unseen)."""
    frequent = centroids.most_frequent([ref.group for ref in split.instances])
    return task.with_backoff(split, dict(enumerate(frequent)))


def prepare_task(
    config: WsdConfig,
    progress: bool = True,
    log=print,
    feature_cache: dict | None = None,
    backbone_cache: dict | None = None,
) -> tuple[WsdTask, dict]:
    """A loaded WSD task with instance features on every split; returns it and a timings dict.

    This is the trainer's own preparation (same reading, same ``attach_features``). Passing the
    same ``feature_cache`` / ``backbone_cache`` dicts to later ``Trainer`` runs of this process
    lets them reuse these features instead of embedding SemCor again.
    """
    task = WsdTask(config)
    for line in task.load():
        log(line)
    started = time.perf_counter()
    task.fit_vocab(task.splits["train"])
    for split in task.splits.values():
        task.tensorise(split)
    vocab_seconds = round(time.perf_counter() - started, 1)
    identity = backbone_identity(config.backbone)
    bilm = (backbone_cache or {}).get(identity) or load_backbone(config.backbone)
    if backbone_cache is not None:
        backbone_cache[identity] = bilm
    log(f"backbone: {identity} ({bilm.num_layers} layers x {bilm.output_dim})")
    features = attach_features(task, bilm, progress, feature_cache)
    return task, {
        "features_seconds": features,
        "vocab_seconds": vocab_seconds,
        "num_layers": bilm.num_layers,
        "dim": bilm.output_dim,
        "backbone": identity,
    }


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
            task, functools.partial(centroid_answers, task, centroids, mix=mix), name, out_dir
        )
        results[name]["seconds"] = round(time.perf_counter() - started, 1)
        log(
            f"{name}: "
            + ", ".join(f"{s} F1 {results[name][s]['f1']:.1f}" for s in ("dev", "test") if s in results[name])
        )
    baselines = {"WordNet first sense": task.first_sense_answers}
    if centroids is not None:  # sense counts do not depend on the mix: any fitted centroids will do
        baselines["SemCor most frequent sense"] = lambda split: semcor_mfs_answers(task, centroids, split)
    for name, answer in baselines.items():
        results[name], reports[name] = score_system(task, answer, name, out_dir)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2) + "\n")
        for split_name in ("dev", "test"):
            tables = {name: r[split_name] for name, r in reports.items() if split_name in r}
            if tables:
                atomic_write_text(out_dir / f"{split_name}.report.md", format_report(tables))
    return results


def _write_answers(out_dir: Path | None, system: str, split: str, answers: dict[str, str]) -> None:
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_answers(out_dir / f"{system.replace(' ', '_').replace(':', '')}.{split}.key.txt", answers)


__all__ = [
    "fixed_mix",
    "fit_centroids",
    "centroid_answers",
    "semcor_mfs_answers",
    "prepare_task",
    "score_system",
    "run_centroid_method",
]
