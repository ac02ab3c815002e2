"""Small end-to-end runs whose results must not change when the code is refactored.

``python tests/golden_runs.py`` records them under tests/golden/ (done once, before a refactor);
tests/test_golden.py runs them again and compares exactly, timings removed.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
# The golden results and old run directories were made on the first shipped `default` backbone
# (3.0M parameters). The stronger default replaced it in the package, so they keep running on those
# files, kept here (git stores the same blob as the package's history: no extra bytes in a clone).
PREVIOUS_DEFAULT = GOLDEN / "backbone_v1"
SHARED_DATA = REPO.parent / "shared" / "data"

# data.limit cuts splits to their first N examples (sentences, trees or WSD sentences). The golden
# files were recorded with the keys of the day (data.max_<split>_sentences), which it replaced.
NER_LIMITS = {"data.limit": {"train": 600, "dev": 100, "test": 100}}
COMMON = {"backbone.store": None, "train.threads": 1, "train.epochs": 2}
# configs/ner_conll2003.yaml as it was when the golden files were recorded (the main config has
# been tuned since, e.g. it now starts from GloVe): the NER runs pin every model and train value.
NER_AS_RECORDED = {
    "model.tag_scheme": "BIOES",
    "model.elmo": {"enabled": True, "dropout": 0.5, "mix": {"mode": "learned", "l2": 0.001, "layer_norm": False}},
    "model.words": {"dim": 50, "lowercase": True, "min_count": 2, "pretrained": None, "fold_digits": True},
    "model.chars": {"dim": 16, "filters": 30, "width": 3},
    "model.hidden": 128,
    "model.lstm_layers": 1,
    "model.dropout": 0.5,
    "train.lr": 0.002,
    "train.lr_decay": 1.0,
    "train.clip": 5.0,
    "train.patience": 3,
    "train.seed": 1,
}
RUNS = {
    "ner": (
        "ner_conll2003.yaml",
        {**NER_AS_RECORDED, **NER_LIMITS, "model.hidden": 32, "train.epochs": 4, "train.batch_size": 16},
    ),
    "pos": ("probe_pos.yaml", dict(NER_LIMITS)),
    "sst5": ("sst5.yaml", {"data.limit": 200}),
    "wsd": ("wsd.yaml", {"data.limit": 200}),
}
GRID = {
    "tasks": ["ner", "pos"],
    "mixes": ["layer1", "learned λ=0.001", "concat"],
    "extra": {
        **{k: v for k, v in NER_AS_RECORDED.items() if not k.startswith(("train", "model.elmo"))},
        **NER_LIMITS,
        "model.hidden": 32,
        "train.epochs": 3,
        "train.batch_size": 16,
        "train.threads": 1,
        "train.lr_decay": 1.0,  # as recorded (the main config decays the rate since)
    },
}


@contextlib.contextmanager
def previous_default():
    """Within the block, the named model 'default' is the first shipped one (:data:`PREVIOUS_DEFAULT`)."""
    import elmo_core.models

    shipped = elmo_core.models.PACKAGED_DIR
    elmo_core.models.PACKAGED_DIR = PREVIOUS_DEFAULT
    try:
        yield
    finally:
        elmo_core.models.PACKAGED_DIR = shipped


def without_timings(value):
    """The value with every key that holds a duration removed (recursively)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def run_task(name: str, out: Path, keep: Path | None = None) -> dict:
    from tasks.registry import load_task_config
    from tasks.trainer import Trainer

    config_name, overrides = RUNS[name]
    config = load_task_config(REPO / "configs" / config_name, {**COMMON, **overrides})
    Trainer(config, out, progress=False, log=lambda *_: None).run()
    if keep is not None:  # a run directory in the format of its day, to prove later code still loads it
        import shutil

        keep.mkdir(parents=True, exist_ok=True)
        for file in ("config.yaml", "vocab.json", "best.pt", "dev.predictions.txt"):
            shutil.copy(out / file, keep / file)
    return {
        "results": without_timings(json.loads((out / "results.json").read_text())),
        "metrics": without_timings(json.loads((out / "metrics.json").read_text())),
    }


def run_grid_golden(out: Path) -> dict:
    from tasks.experiments.layer_grid import run_grid

    rows = run_grid(
        GRID["tasks"],
        1,
        {"name": "default"},
        out,
        mixes=GRID["mixes"],
        extra=GRID["extra"],
        log=lambda *_: None,
        store=None,
    )
    cells = {}
    for path in sorted((out / "runs").glob("*/*/seed*/results.json")):
        cells[str(path.relative_to(out / "runs").parent)] = without_timings(json.loads(path.read_text()))
    return {"rows": rows, "cells": cells}


def main() -> None:
    import tempfile

    GOLDEN.mkdir(exist_ok=True)
    names = sys.argv[1:] or [*RUNS, "grid"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            result = (
                run_grid_golden(Path(tmp) / name)
                if name == "grid"
                else run_task(name, Path(tmp) / name, GOLDEN / "runs" / name)
            )
            (GOLDEN / f"{name}.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
            print(f"recorded {name}")


def record_old_runs() -> None:
    """Run directories written by the code of the day on made-up data (ours, so they may live in the
    repository): config.yaml, vocab.json, best.pt, the data file and the predictions on it."""
    import shutil
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from helpers import (
        MONEY,
        MULTIWORD,
        NEGATIVE,
        NEUTRAL,
        PLANT,
        POSITIVE,
        RIVER,
        SENTENCES,
        write_conll,
        write_trees,
        write_wsd,
    )
    from tasks.registry import load_task_config
    from tasks.trainer import Trainer

    target = GOLDEN / "old_runs"
    shutil.rmtree(target, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_conll(tmp / "ner.txt", SENTENCES * 3)
        rows = [(w, 4) for w in POSITIVE] + [(w, 0) for w in NEGATIVE] + [(w, 2) for w in NEUTRAL]
        write_trees(tmp / "sst.txt", rows * 2)
        write_wsd(tmp, "semcor", [MONEY, RIVER, MULTIWORD, MONEY, RIVER, PLANT])
        tiny = {"backbone.store": None, "train.threads": 1, "train.epochs": 2, "train.patience": 5}
        runs = {
            "ner": (
                "ner_conll2003.yaml",
                "ner.txt",
                {"model.hidden": 8, "model.words.min_count": 1, "train.lr_decay": 1.0},  # as recorded
            ),
            "pos": ("probe_pos.yaml", "ner.txt", {}),
            "sst5": ("sst5.yaml", "sst.txt", {"model.hidden": 8, "model.mlp": [8], "train.batch_size": 4}),
            "wsd": ("wsd.yaml", "semcor", {"train.batch_size": 4}),
        }
        for name, (config_name, data, overrides) in runs.items():
            config = load_task_config(
                REPO / "configs" / config_name,
                {**tiny, **overrides, "data.dir": str(tmp), "data.train": data, "data.dev": data, "data.test": None},
            )
            run = tmp / f"run-{name}"
            Trainer(config, run, progress=False, log=lambda *_: None).run()
            keep = target / name
            keep.mkdir(parents=True)
            for file in ("config.yaml", "vocab.json", "best.pt", "dev.predictions.txt"):
                shutil.copy(run / file, keep / file)
            source = tmp / data
            if source.is_dir():
                shutil.copytree(source, keep / "data" / data)
            else:
                (keep / "data").mkdir()
                shutil.copy(source, keep / "data" / data)


if __name__ == "__main__" and sys.argv[1:] == ["old-runs"]:
    with previous_default():
        record_old_runs()
    sys.exit(0)


if __name__ == "__main__":
    with previous_default():
        main()
