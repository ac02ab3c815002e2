"""Load a trained run directory (config, vocabularies, best checkpoint) for evaluation or prediction."""
from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from data.errors import DataFormatError

from .features import LiveFeatures
from .trainer import build_task, load_backbone


def load_run(run_dir: str | Path, precision: str = "fp32"):
    """(task, model, bilm or None) rebuilt from ``run_dir``; ``precision`` picks the backbone's
    numerics at prediction time (the head was trained on fp32 features)."""
    run_dir = Path(run_dir)
    for name in ("config.yaml", "vocab.json", "best.pt"):
        if not (run_dir / name).is_file():
            raise DataFormatError(run_dir / name, None, "missing: is this a run directory written by 'elmo-tasks train'?")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    # data.limit cut the training run's splits (smoke runs); a file given to evaluate/predict is read whole.
    (config.get("data") or {}).pop("limit", None)
    task = build_task(config)
    task.restore_vocab(json.loads((run_dir / "vocab.json").read_text()))
    bilm = load_backbone(config, precision=precision) if task.uses_elmo() else None
    model = task.build_model(bilm.num_layers if bilm else None, bilm.output_dim if bilm else None)
    model.load_state_dict(torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)["model"])
    model.eval()
    return task, model, bilm


def attach_live_features(split, bilm) -> None:
    if bilm is not None:
        split.features = LiveFeatures(bilm, split.tokens)
