"""A trained run directory (config, vocabularies, best checkpoint) loaded back, and the one
prediction path that ``evaluate``, ``predict`` and the Python API share."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from .base import Head, Task
from .config import rename_legacy_keys
from .errors import RunDirError, brief
from .features import LiveFeatures, load_backbone
from .registry import build_task, task_config_from_tree

RUN_FILES = ("config.yaml", "vocab.json", "best.pt")


@dataclass
class TrainedRun:
    """A task with its vocabularies, its head (eval mode) and the backbone (``None`` without ELMo)."""

    task: Task
    model: Head
    bilm: object | None

    def predict_file(self, path: Path, input_format: str = "auto") -> tuple[object, list, str]:
        """``(split, predictions, format read)`` for a file; the backbone runs live on its sentences."""
        split, used = self.task.read_input(Path(path), input_format)
        self.task.tensorise(split)
        if self.bilm is not None:
            self.task.attach_features(split, LiveFeatures(self.bilm, split.tokens))
        return split, self.task.predict(self.model, split), used


def load_run(run_dir: str | Path, precision: str = "fp32") -> TrainedRun:
    """The run in ``run_dir``; ``precision`` picks the backbone's numerics at prediction time (the
    head was trained on fp32 features). Errors name the file that is missing or damaged."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(run_dir, "not a directory (expected a run directory written by 'elmo-tasks train')")
    for name in RUN_FILES:
        if not (run_dir / name).is_file():
            raise RunDirError(run_dir / name, "missing: is this a run directory written by 'elmo-tasks train'?")
    tree = _read(run_dir / "config.yaml", yaml.safe_load)
    if not isinstance(tree, dict):
        raise RunDirError(run_dir / "config.yaml", "is not a config (a YAML mapping)")
    tree = rename_legacy_keys(tree)
    # data.limit cut the training run's splits (smoke runs); a file given to evaluate/predict is read whole.
    if isinstance(tree.get("data"), dict):
        tree["data"]["limit"] = None
    task = build_task(task_config_from_tree(tree, run_dir / "config.yaml"))
    vocab = _read(run_dir / "vocab.json", json.loads)
    try:
        task.restore_vocab(vocab)
    except KeyError as err:
        raise RunDirError(run_dir / "vocab.json", f"does not hold this task's vocabularies (missing {err})") from None
    except (TypeError, ValueError, AttributeError, IndexError) as err:
        raise RunDirError(
            run_dir / "vocab.json", f"does not hold this task's vocabularies ({type(err).__name__}: {err})"
        ) from None
    bilm = load_backbone(task.config.backbone, precision=precision) if task.uses_elmo() else None
    model = task.build_model(bilm.num_layers if bilm else None, bilm.output_dim if bilm else None)
    try:
        saved = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    except (RuntimeError, ValueError, EOFError, OSError, pickle.UnpicklingError, AttributeError) as err:
        raise RunDirError(
            run_dir / "best.pt",
            f"cannot be read as a checkpoint, it is truncated or damaged ({brief(err)})",
        ) from None
    try:
        model.load_state_dict(saved["model"])
    except (RuntimeError, KeyError, TypeError, IndexError, ValueError) as err:
        raise RunDirError(
            run_dir / "best.pt",
            f"is damaged or belongs to another run ({type(err).__name__}: {str(err).splitlines()[0][:200]})",
        ) from None
    model.eval()
    return TrainedRun(task, model, bilm)


def _read(path: Path, parse):
    try:
        return parse(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as err:
        mark = getattr(err, "problem_mark", None)
        line = getattr(err, "lineno", None) or (mark.line + 1 if mark is not None else None)
        where = f" at line {line}" if line else ""
        raise RunDirError(path, f"is damaged{where} ({type(err).__name__}); was it edited by hand?") from None
