"""The Task contract is all the trainer, CLI, run loader and layer grid need: a toy task written in
three pieces -- a task module, a config, a registry line -- trains, evaluates, predicts and runs in
the grid end to end."""

from __future__ import annotations

import json
import sys

import pytest

from helpers import write_random_model
from tasks.base import Task
from tasks.cli import main
from tasks.registry import TASKS

# Piece 1 of 3: the task module. It uses nothing of the toolkit but the contract and its helpers.
TOY_MODULE = '''
"""A toy task: does a sentence contain a number? Mean-pooled mix of the ELMo layers -> linear."""
from pathlib import Path

import torch
from torch import nn

from tasks.base import Head, Task, build_mix
from tasks.config import TaskConfig


class ToySplit:
    def __init__(self, tokens, labels):
        self.tokens, self.labels, self.features = tokens, labels, None

    def __len__(self):
        return len(self.tokens)

    def summary(self):
        return f"{len(self)} sentences"


class MeanPoolHead(Head):
    def __init__(self, mix, dim):
        super().__init__()
        self.mix, self.out = mix, nn.Linear(dim, 2)

    def forward(self, layers, mask, labels):
        mixed = self.mix(layers, mask)                                            # (batch, time, dim)
        pooled = (mixed * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)     # (batch, dim)
        logits = self.out(pooled)
        return {"loss": nn.functional.cross_entropy(logits, labels) + self.mix_penalty(), "logits": logits}


class ToyTask(Task):
    name, metric, metric_label = "toy", "accuracy", "accuracy"
    Config = TaskConfig
    needs_elmo = True
    default_config = str(Path(__file__).with_name("toy.yaml"))

    def read(self, path, limit=None, training=False):
        rows = [line.split("\\t") for line in Path(path).read_text().splitlines() if line.strip()][:limit]
        return ToySplit([text.split() for text, _ in rows], [int(label) for _, label in rows])

    def fit_vocab(self, train):
        return {}

    def restore_vocab(self, state):
        pass

    def tensorise(self, split):
        pass

    def build_model(self, num_layers, elmo_dim):
        return MeanPoolHead(build_mix(num_layers, self.config.model.elmo.mix), elmo_dim)

    def make_batch(self, split, indices):
        layers, mask = split.features.batch(indices)
        return {"layers": layers, "mask": mask, "labels": torch.tensor([split.labels[i] for i in indices])}

    def decode(self, model, batch):
        return model(**batch)["logits"].argmax(-1).tolist()

    def score(self, split, predictions):
        accuracy = 100 * sum(p == g for p, g in zip(predictions, split.labels)) / len(split)
        return {"accuracy": accuracy, "report": f"accuracy {accuracy:.2f}\\n"}

    def write_predictions(self, split, predictions, path):
        Path(path).write_text("".join(f"{p}\\n" for p in predictions))
'''

# Piece 2 of 3: the config.
TOY_CONFIG = """
task: toy
data: {{dir: {dir}, train: train.tsv, dev: dev.tsv, test: test.tsv}}
backbone: {{name: null, options: {options}, weights: {weights}}}
model:
  elmo: {{mix: {{mode: learned, l2: 0.001}}}}
train: {{epochs: 3, batch_size: 4, lr: 0.01, patience: 5, threads: 1}}
"""

SENTENCES = [
    ("he paid 20 dollars", 1),
    ("she sang a song", 0),
    ("3 dogs ran", 1),
    ("the cat slept", 0),
    ("we met at 9", 1),
    ("birds fly south", 0),
]


@pytest.fixture
def toy(tmp_path, monkeypatch):
    for split, rows in (("train", SENTENCES * 3), ("dev", SENTENCES), ("test", SENTENCES[::-1])):
        (tmp_path / f"{split}.tsv").write_text("".join(f"{text}\t{label}\n" for text, label in rows))
    options, weights = write_random_model(tmp_path / "model")
    (tmp_path / "toy_task.py").write_text(TOY_MODULE)
    (tmp_path / "toy.yaml").write_text(TOY_CONFIG.format(dir=tmp_path, options=options, weights=weights))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("toy_task", None)
    import toy_task

    monkeypatch.setitem(TASKS, "toy", toy_task.ToyTask)  # piece 3 of 3: the registry line
    return tmp_path


def test_a_toy_task_in_three_pieces_trains_evaluates_and_predicts(toy, capsys):
    run = toy / "run"
    assert main(["train", str(toy / "toy.yaml"), "--out", str(run), "--quiet"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert 0 <= results["dev"]["accuracy"] <= 100 and 0 <= results["test"]["accuracy"] <= 100
    history = json.loads((run / "metrics.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3] and len(history[0]["mix_weights"]) == 3
    assert results["mix"]["mode"] == "learned" and abs(sum(results["mix"]["s"]) - 1) < 1e-4
    assert (run / "test.predictions.txt").read_text().count("\n") == len(SENTENCES)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(toy / "test.tsv")]) == 0
    assert f"accuracy {results['test']['accuracy']:.2f}" in capsys.readouterr().out
    assert main(["predict", str(run), "--input", str(toy / "dev.tsv"), "--output", str(toy / "out.txt")]) == 0
    assert (toy / "out.txt").read_text() == (run / "dev.predictions.txt").read_text()


def test_a_toy_task_runs_in_the_layer_grid(toy):
    from tasks.experiments.layer_grid import run_grid

    config = (toy / "toy.yaml").read_text()
    options = next(line for line in config.splitlines() if "options:" in line)
    backbone = {
        "name": None,
        "options": options.split("options: ")[1].split(",")[0],
        "weights": options.split("weights: ")[1].rstrip("}"),
    }
    rows = run_grid(
        ["toy"], 1, backbone, toy / "grid", mixes=["layer0", "learned λ=0.001"], log=lambda *_: None, store=None
    )
    assert {r["mix"] for r in rows} == {"layer0", "learned λ=0.001"}
    assert "toy dev accuracy" in (toy / "grid" / "table.md").read_text()


def test_the_contract_is_small_and_every_task_keeps_its_facts_on_the_class():
    overridable = {
        name
        for name, value in vars(Task).items()
        if callable(value) and not isinstance(value, type) and not name.startswith("_")
    }
    shared = {"load", "predict", "read_unlabelled", "uses_elmo", "data_path", "configured_splits"}
    # 13, plus unlabelled (raw/tokenised text -> a split) and records (JSON output, Python API)
    assert len(overridable - shared) <= 15, sorted(overridable - shared)
    from tasks.experiments.layer_grid import default_config_path

    for name, task in TASKS.items():
        assert task.name == name and task.metric and task.metric_label and task.default_config
        assert default_config_path(name).is_file()  # shipped inside the package, not read from the repository
        assert task.Config is not None and isinstance(task.reduced, dict) and task.cost > 0
        assert not getattr(task, "__abstractmethods__", None), f"{name} leaves {task.__abstractmethods__} open"
