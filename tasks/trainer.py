"""One trainer for every task: Adam, gradient clipping, early stopping on the dev metric,
atomic best/last checkpoints, exact resume, per-epoch metrics (CSV + JSON) in a run directory.

Model selection only ever looks at the dev split; test is scored once, with the best checkpoint.
"""
from __future__ import annotations

import csv
import json
import os
import random
import time
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from data.errors import DataFormatError
from elmo_core.checkpoint import atomic_torch_save, python_rng_state
from elmo_core.progress import bar_disabled

from .config import get_dotted
from .features import CachedFeatures, LiveFeatures


def build_task(config: dict):
    name = config.get("task")
    if name == "ner":
        from .ner import NerTask

        return NerTask(config)
    if name in ("pos", "chunk"):
        from .probe import ProbeTask

        return ProbeTask(config)
    if name in ("sst5", "sst2", "sentiment"):
        from .sentiment import SentimentTask

        return SentimentTask(config)
    if name == "wsd":
        from .wsd import WsdTask

        return WsdTask(config)
    raise DataFormatError("<config>", None, f"unknown task {name!r} (expected: ner, pos, chunk, sst5, sst2, sentiment or wsd)")


def load_backbone(config: dict, device: str = "cpu", precision: str = "fp32"):
    from elmo_core import load_bilm

    backbone = config.get("backbone", {}) or {}
    return load_bilm(name=backbone.get("name"), options=backbone.get("options"), weights=backbone.get("weights"),
                     device=device, precision=precision)


def backbone_files(config: dict) -> tuple[str, str]:
    from elmo_core.models import resolve

    backbone = config.get("backbone", {}) or {}
    if backbone.get("options"):
        return backbone["options"], backbone["weights"]
    options, weights = resolve(backbone.get("name") or "default")
    return str(options), str(weights)


def backbone_identity(config: dict) -> str:
    backbone = config.get("backbone", {}) or {}
    if backbone.get("options"):
        return f"{backbone['options']} + {backbone['weights']}"
    return f"named model '{backbone.get('name') or 'default'}'"


def attach_features(task, bilm, splits: list[str], progress: bool, cache: dict | None = None,
                    backbone_key: str = "") -> dict[str, float]:
    """Compute the ELMo layers of each split once (the backbone is frozen); seconds per split.
    ``cache`` (keyed by backbone and the split's exact tokens) shares them between runs of one
    process, e.g. the cells of a layer-weighting grid."""
    seconds = {}
    for name in splits:
        split = task.splits[name]
        started = time.perf_counter()
        key = (backbone_key, hash(tuple(tuple(s) for s in split.tokens)))
        store_dir = get_dotted(task.config, "backbone.store")
        if get_dotted(task.config, "backbone.cache", True) is False:
            split.features = LiveFeatures(bilm, split.tokens)  # the backbone runs on every batch
        elif cache is not None and key in cache:
            split.features = cache[key]
        else:
            split.features = (features_from_store(task.config, bilm, split.tokens, Path(store_dir), progress) if store_dir
                              else CachedFeatures.compute(bilm, split.tokens, progress=progress, desc=f"ELMo {name}"))
            if cache is not None:
                cache[key] = split.features
        seconds[name] = round(time.perf_counter() - started, 1)
    return seconds


def warm_feature_cache(config: dict, feature_cache: dict, backbone_cache: dict, progress: bool = False) -> dict[str, float]:
    """Embed (or read from the store) every split of the task ``config`` describes into
    ``feature_cache``, so that later ``Trainer`` runs given the same dicts, in this process or in
    processes forked from it, train without running the backbone. Returns seconds per split."""
    task = build_task(config)
    for _ in task.load():
        pass
    identity = backbone_identity(config)
    if identity not in backbone_cache:
        backbone_cache[identity] = load_backbone(config)
    return attach_features(task, backbone_cache[identity], list(task.splits), progress, feature_cache, identity)


def features_from_store(config: dict, bilm, sentences: list[list[str]], store_dir: Path, progress: bool) -> CachedFeatures:
    """Memory-mapped layers from the on-disk feature store, embedding only what it lacks."""
    from elmo_core.loading import model_identity
    from elmo_core.store import FeatureStore

    model_id = model_identity(*backbone_files(config))
    dtype = get_dotted(config, "backbone.store_dtype", "float16")
    store = FeatureStore.build(store_dir, bilm, model_id, sentences, dtype=dtype, progress=progress)
    return CachedFeatures.from_store(store, sentences)


def write_json(path: Path, value) -> None:
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(partial, path)


class Trainer:
    def __init__(self, config: dict, run_dir: Path, progress: bool = True, log=print,
                 feature_cache: dict | None = None, backbone_cache: dict | None = None):
        self.config, self.run_dir, self.progress, self.log = config, Path(run_dir), progress, log
        self.feature_cache, self.backbone_cache = feature_cache, backbone_cache
        t = config.get("train", {})
        self.epochs = int(t.get("epochs", 20))
        self.batch_size = int(t.get("batch_size", 32))
        self.lr = float(t.get("lr", 1e-3))
        self.clip = float(t.get("clip", 5.0))
        self.patience = int(t.get("patience", 4))
        self.seed = int(t.get("seed", 1))
        self.threads = int(t.get("threads", 0))

    def _check_run_dir(self) -> bool:
        """True when resuming. A run dir made with another config is never overwritten."""
        saved = self.run_dir / "config.yaml"
        if not saved.is_file():
            return False
        if yaml.safe_load(saved.read_text()) != self.config:
            raise DataFormatError(saved, None, "this run directory was made with a different config; "
                                  "choose another --out (nothing was overwritten)")
        return (self.run_dir / "last.pt").is_file()

    def run(self) -> dict:
        if self.threads:
            torch.set_num_threads(self.threads)
        resuming = self._check_run_dir()
        task = build_task(self.config)
        for line in task.load():
            self.log(line)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))
        task.build_vocabularies()
        write_json(self.run_dir / "vocab.json", task.vocab_state())
        for split in task.splits.values():
            task.tensorise(split)
        timings: dict = {}
        num_layers = dim = None
        if task.uses_elmo():
            identity = backbone_identity(self.config)
            if self.backbone_cache is not None and identity in self.backbone_cache:
                bilm = self.backbone_cache[identity]
            else:
                bilm = load_backbone(self.config)
                if self.backbone_cache is not None:
                    self.backbone_cache[identity] = bilm
            num_layers, dim = bilm.num_layers, bilm.output_dim
            self.log(f"backbone: {identity} ({num_layers} layers x {dim})")
            timings["features_seconds"] = attach_features(task, bilm, list(task.splits), self.progress,
                                                          self.feature_cache, identity)
        torch.manual_seed(self.seed)
        rng = random.Random(self.seed)
        model = task.build_model(num_layers, dim)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=self.lr)
        state = {"epoch": 0, "best_metric": float("-inf"), "best_epoch": 0, "bad_epochs": 0, "history": []}
        if resuming:
            saved = torch.load(self.run_dir / "last.pt", map_location="cpu", weights_only=True)
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            state = json.loads(saved["trainer_state"])
            torch.set_rng_state(saved["torch_rng"])
            rng.setstate(python_rng_state(json.loads(saved["python_rng"])))
            self.log(f"resuming after epoch {state['epoch']} (best dev {task.metric} {state['best_metric']:.2f})")
        train, dev = task.splits["train"], task.splits["dev"]
        started = time.perf_counter()
        while state["epoch"] < self.epochs and state["bad_epochs"] < self.patience:
            epoch = state["epoch"] + 1
            epoch_start = time.perf_counter()
            model.train()
            total, count = 0.0, 0
            batches = task.batches(train, self.batch_size, rng)
            for indices in tqdm(batches, desc=f"epoch {epoch}/{self.epochs}", disable=bar_disabled(self.progress), leave=False):
                batch = task.make_batch(train, indices)
                loss = task.loss(model, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.clip)
                optimizer.step()
                total, count = total + float(loss.detach()), count + 1
            train_seconds = time.perf_counter() - epoch_start
            dev_scores = task.score(dev, task.predict(model, dev))
            metric = dev_scores[task.metric]
            improved = metric > state["best_metric"]
            row = {"epoch": epoch, "train_loss": total / max(count, 1), f"dev_{task.metric}": metric,
                   "train_seconds": round(train_seconds, 2), "epoch_seconds": round(time.perf_counter() - epoch_start, 2)}
            if getattr(model, "mix", None) is not None and model.mix.mode == "learned":
                row["mix_weights"] = [round(float(w), 4) for w in model.mix.normalized_weights().detach()]
                row["mix_gamma"] = round(float(model.mix.gamma.detach()), 4)
            state["history"].append(row)
            state["epoch"] = epoch
            if improved:
                state.update(best_metric=metric, best_epoch=epoch, bad_epochs=0)
                atomic_torch_save({"model": model.state_dict()}, self.run_dir / "best.pt")
            else:
                state["bad_epochs"] += 1
            atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "trainer_state": json.dumps(state), "torch_rng": torch.get_rng_state(),
                         "python_rng": json.dumps(rng.getstate())}, self.run_dir / "last.pt")
            self._write_metrics(state["history"])
            self.log(f"epoch {epoch}: loss {row['train_loss']:.3f}, dev {task.metric} {metric:.2f}"
                     f"{' (best)' if improved else ''}, {row['epoch_seconds']:.0f}s")
        total_seconds = time.perf_counter() - started
        model.load_state_dict(torch.load(self.run_dir / "best.pt", map_location="cpu", weights_only=True)["model"])
        results = {"best_epoch": state["best_epoch"], "epochs_run": state["epoch"], "backbone": backbone_identity(self.config)
                   if task.uses_elmo() else None, "train_seconds_total": round(total_seconds, 1),
                   "seconds_per_epoch": round(sum(r["train_seconds"] for r in state["history"]) / max(len(state["history"]), 1), 2),
                   **timings}
        mix = getattr(model, "mix", None)
        if mix is not None:
            results["mix"] = {"mode": mix.mode, "s": [round(float(w), 5) for w in mix.normalized_weights().detach()],
                              "gamma": round(float(mix.gamma.detach()), 5)}
        for name in ("dev", "test"):
            if name in task.splits:
                predictions = task.predict(model, task.splits[name])
                scores = task.score(task.splits[name], predictions)
                task.write_predictions(task.splits[name], predictions, self.run_dir / f"{name}.predictions.txt")
                (self.run_dir / f"{name}.report.txt").write_text(scores.pop("report"))
                results[name] = scores
        write_json(self.run_dir / "results.json", results)
        return results

    def _write_metrics(self, history: list[dict]) -> None:
        write_json(self.run_dir / "metrics.json", history)
        keys = [k for k in history[0] if not isinstance(history[0][k], list)]
        with (self.run_dir / "metrics.csv.part").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(history)
        os.replace(self.run_dir / "metrics.csv.part", self.run_dir / "metrics.csv")
