"""One trainer for every task: Adam, gradient clipping, early stopping on the dev metric,
atomic best/last checkpoints, exact resume, per-epoch metrics (CSV + JSON) in a run directory.

The run directory's ``config.yaml`` records the sha256 of the backbone's files
(:meth:`Trainer.record_backbone`); a resumed run, like ``predict`` and ``evaluate``, refuses files
with other hashes (:func:`tasks.features.check_run_backbone`).

The trainer knows a task only through :class:`tasks.base.Task` and a head only through its
``forward(**batch)["loss"]`` and ``mix_weights()``. Model selection only ever looks at the dev
split; test is scored once, with the best checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import random
import time
from dataclasses import replace
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from data.warnings import collecting
from elmo_core.checkpoint import python_rng_state
from elmo_core.io import atomic_torch_save, atomic_write_json, atomic_write_text, check_output_dir, directory_lock
from elmo_core.progress import bar_disabled

from .config import RESUMABLE_KEYS, BackboneConfig, ConfigError, TaskConfig, changed_keys, to_dict
from .errors import RunDirError, brief
from .features import attach_features, backbone_identity, backbone_sha256, check_run_backbone, load_backbone
from .registry import build_task, task_config_from_tree


def check_mix_fits(config: TaskConfig, num_layers: int) -> None:
    """``mode: single`` names a layer the backbone has (checked before any sentence is embedded)."""
    mix = config.model.elmo.mix
    if mix.mode == "single" and not 0 <= mix.layer < num_layers:
        raise ConfigError(
            "<config>",
            [
                f"model.elmo.mix.layer: expected 0..{num_layers - 1} (this backbone has "
                f"{num_layers} layers), found {mix.layer}"
            ],
        )


def saved_config(run_dir: Path) -> dict | None:
    """The resolved config a run directory was made with (older layouts mapped to today's keys)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return None
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
        return to_dict(task_config_from_tree(upgrade_saved_tree(tree), path))
    except (yaml.YAMLError, UnicodeDecodeError, AttributeError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise RunDirError(path, f"cannot be read{where} ({type(err).__name__}); choose another --out") from None


def upgrade_saved_tree(tree):
    """A run's saved config tree with the defaults of older releases written as today's: runs
    written before ``data.strict`` existed saved the TSV columns' old defaults (``text_column: 0``,
    ``label_column: 1``), which are today's ``null`` (found by header name, else 0 and 1)."""
    data = tree.get("data") if isinstance(tree, dict) else None
    if (
        isinstance(data, dict)
        and "strict" not in data
        and (data.get("text_column"), data.get("label_column")) == (0, 1)
    ):
        data["text_column"] = data["label_column"] = None
    return tree


class Trainer:
    def __init__(
        self,
        config: TaskConfig,
        run_dir: Path,
        progress: bool = True,
        log=print,
        feature_cache: dict | None = None,
        backbone_cache: dict | None = None,
        wait: bool | None = None,
    ):
        """``wait``: when another process holds the run directory (or the feature store's shard),
        wait for it (``True``), fail at once naming its PID (``False``), or wait unless
        ``ELMO_TASKS_NO_WAIT=1`` (``None``)."""
        if not isinstance(config, TaskConfig):
            raise TypeError("Trainer needs a typed config: tasks.config.load_task_config(path, overrides)")
        self.config, self.run_dir, self.progress, self.log = config, Path(run_dir), progress, log
        self.feature_cache, self.backbone_cache, self.wait = feature_cache, backbone_cache, wait
        self._backbone_keys: set[str] | None = None

    def resuming(self) -> bool:
        """True when ``last.pt`` holds progress made with this config. Only budgets (``RESUMABLE_KEYS``)
        may differ, and where the backbone is, when its files have the sha256 the run recorded; a
        directory with a config but no progress (e.g. a run that stopped at bad data) is simply
        started again."""
        saved = saved_config(self.run_dir)
        if saved is None or not (self.run_dir / "last.pt").is_file():
            return False
        allowed = set(RESUMABLE_KEYS)
        changed = [k for k in changed_keys(saved, to_dict(self.config)) if k not in allowed]
        # Another config altogether is named as such (all its changed keys), before the backbone's
        # files are compared: that check is for a run resumed with its own config.
        others = [k for k in changed if not k.startswith("backbone.")]
        if not others and self.config.backbone.weights_sha256 is not None:  # ELMo: see record_backbone
            if self._backbone_keys is None:  # checked (and warned) once, not again under the lock
                self._backbone_keys = self.resumed_backbone_keys(BackboneConfig(**saved["backbone"]))
            changed = [k for k in changed if k not in self._backbone_keys]
        if changed:
            raise RunDirError(
                self.run_dir,
                f"was trained with a different config ({', '.join(changed[:8])} "
                f"differ{'s' if len(changed) == 1 else ''}); only {', '.join(RESUMABLE_KEYS)} may "
                "change on resume. Choose another --out (nothing was overwritten)",
            )
        return True

    def record_backbone(self) -> None:
        """Put the sha256 of the backbone's files in the config the run directory records; a config
        that already holds them (a run's config.yaml trained again) must name files that have them."""
        backbone = self.config.backbone
        sums = backbone_sha256(backbone)
        if backbone.weights_sha256 is not None and sums != {k: getattr(backbone, k) for k in sums}:
            raise ConfigError(
                "<config>",
                [
                    f"backbone.weights_sha256: expected the files of {backbone_identity(backbone)} to have "
                    f"{backbone.weights_sha256[:16]}… (and options_sha256 {backbone.options_sha256[:16]}…), "
                    f"they have {sums['weights_sha256'][:16]}… ({sums['options_sha256'][:16]}…); remove the two "
                    "keys to train on these files, or point backbone.options / backbone.weights at those files"
                ],
            )
        self.config = replace(self.config, backbone=replace(backbone, **sums))

    def resumed_backbone_keys(self, recorded: BackboneConfig) -> set[str]:
        """The backbone keys that may differ from the run's saved config when resuming it: where the
        files are, when they have the sha256 the run recorded; the sha256 themselves, when the run
        predates them (warned). Files with other hashes are refused."""
        remedy = (
            "Resume with backbone.options and backbone.weights set to the files the run was trained with "
            "(--set backbone.options=... --set backbone.weights=...; --options/--weights for 'benchmark layers'), "
            "or train again in another directory (--out)"
        )
        if check_run_backbone(self.run_dir, recorded, self.config.backbone, remedy):
            return {"backbone.name", "backbone.options", "backbone.weights"}
        return {"backbone.options_sha256", "backbone.weights_sha256"}

    def backbone(self):
        identity = backbone_identity(self.config.backbone)
        if self.backbone_cache is not None and identity in self.backbone_cache:
            return self.backbone_cache[identity]
        bilm = load_backbone(self.config.backbone)
        if self.backbone_cache is not None:
            self.backbone_cache[identity] = bilm
        return bilm

    def run(self) -> dict:
        """Check every path, read the data, then train holding the run directory's lock
        (``RUN_DIR/.lock``): a second trainer on the same directory waits, then resumes.
        Suspicious data is a counted warning, or an error under ``data.strict`` (data/warnings.py)."""
        with collecting(strict=self.config.data.strict):
            return self._run()

    def _run(self) -> dict:
        train_cfg = self.config.train
        if train_cfg.threads:
            torch.set_num_threads(train_cfg.threads)
        task = build_task(self.config)
        for split in task.configured_splits():  # every path checked before anything is read
            task.data_path(split)
        check_output_dir(self.run_dir, "the run directory (--out)")
        backbone = self.config.backbone
        if backbone.store and backbone.cache and task.uses_elmo():
            check_output_dir(backbone.store, "the feature store (backbone.store)")
        if task.uses_elmo():
            self.record_backbone()
            task.config = self.config
        self.resuming()  # a config that does not fit the directory is refused before any data is read
        for line in task.load():
            self.log(line)
        with directory_lock(self.run_dir, self.wait, self.log):
            return self._train(task)

    def _train(self, task) -> dict:
        train_cfg = self.config.train
        resuming = self.resuming()  # again, under the lock: a trainer we waited for may have trained here
        atomic_write_text(self.run_dir / "config.yaml", yaml.safe_dump(to_dict(self.config), sort_keys=False))
        vocab = task.fit_vocab(task.splits["train"])
        for note in vocab.get("notes", []):
            self.log(note)
        atomic_write_json(self.run_dir / "vocab.json", vocab)
        for split in task.splits.values():
            task.tensorise(split)
        timings: dict = {}
        num_layers = dim = None
        if task.uses_elmo():
            bilm = self.backbone()
            num_layers, dim = bilm.num_layers, bilm.output_dim
            check_mix_fits(self.config, num_layers)
            self.log(f"backbone: {backbone_identity(self.config.backbone)} ({num_layers} layers x {dim})")
            timings["features_seconds"] = attach_features(
                task, bilm, self.progress, self.feature_cache, wait=self.wait, log=self.log
            )
        torch.manual_seed(train_cfg.seed)
        rng = random.Random(train_cfg.seed)
        model = task.build_model(num_layers, dim)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=train_cfg.lr)
        state = {"epoch": 0, "best_metric": float("-inf"), "best_epoch": 0, "bad_epochs": 0, "history": []}
        if resuming:
            state = self._restore(model, optimizer, rng)
            self.log(f"resuming after epoch {state['epoch']} (best dev {task.metric} {state['best_metric']:.2f})")
        started = time.perf_counter()
        while state["epoch"] < train_cfg.epochs and state["bad_epochs"] < train_cfg.patience:
            self._epoch(task, model, optimizer, rng, state)
        total_seconds = time.perf_counter() - started
        model.load_state_dict(self._load(self.run_dir / "best.pt")["model"])
        history = state["history"]
        results = {
            "best_epoch": state["best_epoch"],
            "epochs_run": state["epoch"],
            "backbone": backbone_identity(self.config.backbone) if task.uses_elmo() else None,
            "train_seconds_total": round(total_seconds, 1),
            "seconds_per_epoch": round(sum(r["train_seconds"] for r in history) / max(len(history), 1), 2),
            **timings,
        }
        mix = model.mix_weights()
        if mix is not None:
            results["mix"] = {
                "mode": mix["mode"],
                "s": [round(w, 5) for w in mix["s"]],
                "gamma": round(mix["gamma"], 5),
            }
        for name in ("dev", "test"):
            if name in task.splits:
                split = task.splits[name]
                predictions = task.predict(model, split)
                scores = task.score(split, predictions)
                task.write_predictions(split, predictions, self.run_dir / f"{name}.predictions.txt")
                atomic_write_text(self.run_dir / f"{name}.report.txt", scores.pop("report"))
                results[name] = scores
        atomic_write_json(self.run_dir / "results.json", results)
        return results

    def _epoch(self, task, model, optimizer, rng: random.Random, state: dict) -> None:
        """One pass over train, a dev score, checkpoints and the metrics files."""
        epoch, epochs = state["epoch"] + 1, self.config.train.epochs
        epoch_start = time.perf_counter()
        # A function of the epoch, not optimizer state: a resumed run gets the same rate.
        for group in optimizer.param_groups:
            group["lr"] = self.config.train.lr * self.config.train.lr_decay ** (epoch - 1)
        model.train()
        total, count = 0.0, 0
        train, dev = task.splits["train"], task.splits["dev"]
        for indices in tqdm(
            task.batches(train, self.config.train.batch_size, rng),
            desc=f"epoch {epoch}/{epochs}",
            disable=bar_disabled(self.progress),
            leave=False,
        ):
            loss = model(**task.make_batch(train, indices))["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.train.clip)
            optimizer.step()
            total, count = total + float(loss.detach()), count + 1
        train_seconds = time.perf_counter() - epoch_start
        metric = task.score(dev, task.predict(model, dev))[task.metric]
        improved = metric > state["best_metric"]
        row = {
            "epoch": epoch,
            "train_loss": total / max(count, 1),
            f"dev_{task.metric}": metric,
            "train_seconds": round(train_seconds, 2),
            "epoch_seconds": round(time.perf_counter() - epoch_start, 2),
        }
        mix = model.mix_weights()
        if mix is not None and mix["mode"] == "learned":
            row["mix_weights"] = [round(w, 4) for w in mix["s"]]
            row["mix_gamma"] = round(mix["gamma"], 4)
        state["history"].append(row)
        state["epoch"] = epoch
        if improved:
            state.update(best_metric=metric, best_epoch=epoch, bad_epochs=0)
            atomic_torch_save({"model": model.state_dict()}, self.run_dir / "best.pt")
        else:
            state["bad_epochs"] += 1
        atomic_torch_save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "trainer_state": json.dumps(state),
                "torch_rng": torch.get_rng_state(),
                "python_rng": json.dumps(rng.getstate()),
            },
            self.run_dir / "last.pt",
        )
        self._write_metrics(state["history"])
        self.log(
            f"epoch {epoch}: loss {row['train_loss']:.3f}, dev {task.metric} {metric:.2f}"
            f"{' (best)' if improved else ''}, {row['epoch_seconds']:.0f}s"
        )

    def _restore(self, model, optimizer, rng: random.Random) -> dict:
        path = self.run_dir / "last.pt"
        saved = self._load(path)
        try:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            state = json.loads(saved["trainer_state"])
            torch.set_rng_state(saved["torch_rng"])
            rng.setstate(python_rng_state(json.loads(saved["python_rng"])))
        except (RuntimeError, KeyError, ValueError, TypeError) as err:
            raise RunDirError(
                path,
                f"cannot resume from it ({type(err).__name__}: {str(err)[:200]}); delete it to start the run again",
            ) from None
        return state

    @staticmethod
    def _load(path: Path) -> dict:
        """A checkpoint this trainer wrote; a file torch cannot read (truncated, random bytes,
        another program's pickle) is a :class:`RunDirError` naming it."""
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, ValueError, EOFError, OSError, pickle.UnpicklingError, AttributeError) as err:
            raise RunDirError(
                path,
                f"cannot be read as a checkpoint, it is truncated or damaged ({brief(err)}); "
                "delete it to start the run again, or choose another --out",
            ) from None
        if not isinstance(saved, dict) or "model" not in saved:
            raise RunDirError(path, "is not a checkpoint of 'elmo-tasks train' (no model state in it)")
        return saved

    def _write_metrics(self, history: list[dict]) -> None:
        atomic_write_json(self.run_dir / "metrics.json", history)
        keys = [k for k in history[0] if not isinstance(history[0][k], list)]
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.run_dir / "metrics.csv", text.getvalue())
