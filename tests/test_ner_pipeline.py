"""End-to-end NER on tiny files: training, determinism, exact resume, evaluate and predict."""

import json
from pathlib import Path

import pytest
import torch

from helpers import SENTENCES, write_conll, write_random_model
from tasks.cli import main
from tasks.registry import load_task_config
from tasks.trainer import Trainer


@pytest.fixture
def ner_setup(tmp_path):
    write_conll(tmp_path / "train.txt", SENTENCES * 3)
    write_conll(tmp_path / "dev.txt", SENTENCES[:3])
    write_conll(tmp_path / "test.txt", SENTENCES[3:])
    options, weights = write_random_model(tmp_path / "model")
    overrides = {
        "data.dir": str(tmp_path),
        "data.train": "train.txt",
        "data.dev": "dev.txt",
        "data.test": "test.txt",
        "backbone.name": None,
        "backbone.options": str(options),
        "backbone.weights": str(weights),
        "train.epochs": 3,
        "train.patience": 5,
        "train.threads": 1,
        "model.hidden": 16,
        "model.words.min_count": 1,
        "backbone.store": str(tmp_path / "store"),
    }
    return tmp_path, overrides


def config(overrides: dict) -> dict:
    return load_task_config(Path(__file__).resolve().parents[1] / "configs" / "ner_conll2003.yaml", overrides)


def test_training_writes_a_complete_run_directory(ner_setup):
    tmp_path, overrides = ner_setup
    results = Trainer(config(overrides), tmp_path / "run", progress=False, log=lambda *_: None).run()
    run = tmp_path / "run"
    for name in (
        "config.yaml",
        "vocab.json",
        "best.pt",
        "last.pt",
        "metrics.csv",
        "metrics.json",
        "results.json",
        "dev.predictions.txt",
        "test.report.txt",
    ):
        assert (run / name).is_file(), name
    history = json.loads((run / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert len(history[0]["mix_weights"]) == 3 and abs(sum(history[0]["mix_weights"]) - 1) < 1e-4
    assert 0 <= results["test"]["f1"] <= 100 and set(results["test"]["per_type"]) <= {"PER", "LOC", "ORG", "MISC"}
    assert results["best_epoch"] == max(history, key=lambda r: r["dev_f1"])["epoch"]
    from elmo_core.store import FeatureStore

    assert len(FeatureStore(tmp_path / "store")) == 6  # the six distinct sentences, stored once


def test_same_seed_gives_identical_results(ner_setup):
    tmp_path, overrides = ner_setup
    a = Trainer(config(overrides), tmp_path / "a", progress=False, log=lambda *_: None).run()
    b = Trainer(config(overrides), tmp_path / "b", progress=False, log=lambda *_: None).run()
    assert (
        json.loads((tmp_path / "a" / "metrics.json").read_text())[-1]["train_loss"]
        == json.loads((tmp_path / "b" / "metrics.json").read_text())[-1]["train_loss"]
    )
    assert a["test"] == b["test"]


def test_interrupted_run_resumes_to_the_same_result(ner_setup, monkeypatch):
    tmp_path, overrides = ner_setup
    straight = Trainer(config(overrides), tmp_path / "straight", progress=False, log=lambda *_: None).run()
    original = Trainer._write_metrics
    calls = {"n": 0}

    def crash_after_first_epoch(self, history):
        original(self, history)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(Trainer, "_write_metrics", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config(overrides), tmp_path / "resumed", progress=False, log=lambda *_: None).run()
    assert not (tmp_path / "resumed" / "results.json").exists()
    messages = []
    resumed = Trainer(config(overrides), tmp_path / "resumed", progress=False, log=messages.append).run()
    assert any("resuming after epoch 1" in m for m in messages)
    assert resumed["test"] == straight["test"] and resumed["best_epoch"] == straight["best_epoch"]


def test_run_directory_of_another_config_is_not_overwritten(ner_setup, capsys):
    tmp_path, overrides = ner_setup
    Trainer(config(overrides), tmp_path / "run", progress=False, log=lambda *_: None).run()
    before = (tmp_path / "run" / "best.pt").read_bytes()
    args = [
        "train",
        str(Path(__file__).resolve().parents[1] / "configs" / "ner_conll2003.yaml"),
        "--out",
        str(tmp_path / "run"),
        "--quiet",
    ]
    assert main(args) == 2
    assert "different config" in capsys.readouterr().err
    assert (tmp_path / "run" / "best.pt").read_bytes() == before


def test_evaluate_and_predict_verbs(ner_setup, capsys):
    tmp_path, overrides = ner_setup
    results = Trainer(config(overrides), tmp_path / "run", progress=False, log=lambda *_: None).run()
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(tmp_path / "test.txt")]) == 0
    out = capsys.readouterr().out
    assert f"f1 {results['test']['f1']:.2f}" in out and "processed 13 tokens" in out
    (tmp_path / "raw.txt").write_text("Peter visited Britain\nEU said\n")
    assert (
        main(
            [
                "predict",
                str(tmp_path / "run"),
                "--input",
                str(tmp_path / "raw.txt"),
                "--output",
                str(tmp_path / "o.txt"),
            ]
        )
        == 0
    )
    blocks = (tmp_path / "o.txt").read_text().strip().split("\n\n")
    assert [len(b.splitlines()) for b in blocks] == [3, 2]
    assert all(
        line.split()[1] in {"O", "I-PER", "I-LOC", "I-ORG", "I-MISC", "B-PER", "B-LOC", "B-ORG", "B-MISC"}
        for b in blocks
        for line in b.splitlines()
    )


def test_missing_data_gives_a_clear_message(tmp_path, capsys):
    args = [
        "train",
        str(Path(__file__).resolve().parents[1] / "configs" / "ner_conll2003.yaml"),
        "--set",
        f"data.dir={tmp_path}",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "eng.train" in err and "CONLL2003_DIR" in err and "Traceback" not in err


def test_lr_decays_per_epoch_and_a_resumed_run_gets_the_same_rates(ner_setup, monkeypatch):
    tmp_path, overrides = ner_setup
    overrides = {**overrides, "train.lr": 0.01, "train.lr_decay": 0.5, "model.words.pretrained": None}
    rates = []
    step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    Trainer(config({**overrides, "train.epochs": 2}), tmp_path / "run", progress=False, log=lambda *_: None).run()
    per_epoch = sorted(set(rates), reverse=True)
    assert per_epoch == pytest.approx([0.01, 0.005])
    rates.clear()  # resume with a larger budget: epoch 3 continues the schedule
    Trainer(config({**overrides, "train.epochs": 3}), tmp_path / "run", progress=False, log=lambda *_: None).run()
    assert rates and all(rate == pytest.approx(0.0025) for rate in rates)


def test_lr_decay_outside_its_range_is_refused(ner_setup):
    from data.config import ConfigError

    _, overrides = ner_setup
    for bad in (0, 1.5, -0.1):
        with pytest.raises(ConfigError, match="lr_decay"):
            config({**overrides, "train.lr_decay": bad})
