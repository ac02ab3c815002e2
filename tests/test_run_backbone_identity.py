"""A run directory records the sha256 of the backbone files it was trained with (``backbone.*_sha256``
in its config.yaml): when the files its config names now differ (the named model 'default' was
replaced by a stronger one), predict, evaluate and resuming refuse it instead of running its head on
features it was not trained on; a run from before the record is used with one warning."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

import elmo_core.models
from elmo_core.io import file_sha256
from helpers import REPO, SENTENCES, quiet, write_conll, write_random_model
from tasks.cli import main
from tasks.errors import RunDirError, UncheckedBackboneWarning
from tasks.registry import load_task_config

NER = REPO / "configs" / "ner_conll2003.yaml"

torch.set_num_threads(1)


def overrides(root: Path, **extra) -> dict:
    return {
        "data.dir": str(root),
        "data.train": "train.txt",
        "data.dev": "dev.txt",
        "data.test": None,
        "backbone.name": "default",
        "backbone.store": None,
        "train.epochs": 1,
        "train.threads": 1,
        "model.hidden": 8,
        "model.words.min_count": 1,
        "model.words.pretrained": None,
        **extra,
    }


def train(root: Path, run: Path, **extra) -> dict:
    from tasks.trainer import Trainer

    return Trainer(load_task_config(NER, overrides(root, **extra)), run, progress=False, log=quiet).run()


def ship_default(folder: Path, seed: int, monkeypatch) -> tuple[Path, Path]:
    """A tiny random biLM (``seed``) shipped as the named model 'default'."""
    files = write_random_model(folder / "default", seed=seed)
    monkeypatch.setattr(elmo_core.models, "PACKAGED_DIR", folder)
    return files


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(data folder, a one-epoch NER run trained on 'default' = the tiny biLM of seed 0)."""
    root = tmp_path_factory.mktemp("runs")
    write_conll(root / "train.txt", SENTENCES * 2)
    write_conll(root / "dev.txt", SENTENCES[:3])
    with pytest.MonkeyPatch.context() as monkeypatch:
        ship_default(root / "shipped", 0, monkeypatch)
        train(root, root / "run")
    return root, root / "run"


@pytest.fixture
def run(trained, tmp_path) -> Path:
    shutil.copytree(trained[1], tmp_path / "run")
    return tmp_path / "run"


def predict_and_evaluate(run: Path, root: Path, tmp_path: Path) -> list[int]:
    return [
        main(["predict", str(run), "--input", str(root / "dev.txt"), "--output", str(tmp_path / "dev.tags")]),
        main(["evaluate", str(run), "--data", str(root / "dev.txt")]),
    ]


def test_a_run_records_the_sha256_of_its_backbone_files(trained):
    root, run = trained
    recorded = yaml.safe_load((run / "config.yaml").read_text())["backbone"]
    options, weights = root / "shipped" / "default" / "options.json", root / "shipped" / "default" / "weights.hdf5"
    assert recorded["options_sha256"] == file_sha256(options)
    assert recorded["weights_sha256"] == file_sha256(weights)


def test_unchanged_files_predict_evaluate_and_resume(trained, run, tmp_path, monkeypatch, recwarn):
    root = trained[0]
    ship_default(tmp_path / "shipped", 0, monkeypatch)  # the same bytes, in another place
    assert predict_and_evaluate(run, root, tmp_path) == [0, 0]
    assert train(root, run, **{"train.epochs": 2})["epochs_run"] == 2
    assert not [w for w in recwarn if issubclass(w.category, UncheckedBackboneWarning)]


def test_replaced_files_are_refused_by_predict_evaluate_and_resume(trained, run, tmp_path, monkeypatch, capsys):
    root = trained[0]
    then = yaml.safe_load((run / "config.yaml").read_text())["backbone"]["weights_sha256"]
    ship_default(tmp_path / "shipped", 0, monkeypatch)
    assert predict_and_evaluate(run, root, tmp_path) == [0, 0]
    (tmp_path / "dev.tags").unlink()
    _, weights = ship_default(tmp_path / "shipped", 1, monkeypatch)  # replaced in place: a stronger 'default'
    now = file_sha256(weights)
    assert now != then
    capsys.readouterr()
    assert predict_and_evaluate(run, root, tmp_path) == [2, 2]
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2
    for line in errors:
        assert f"{run}: trained on another backbone than named model 'default' is now" in line
        assert f"weights sha256 {then[:16]}… recorded, {now[:16]}… now ({weights})" in line
        assert f"Set backbone.options and backbone.weights in {run / 'config.yaml'} to the files" in line
        assert "or train the run again" in line
    assert not (tmp_path / "dev.tags").exists()
    with pytest.raises(RunDirError, match=r"--set backbone\.options=\.\.\. --set backbone\.weights=\.\.\.") as err:
        train(root, run, **{"train.epochs": 2})
    assert f"{then[:16]}… recorded, {now[:16]}… now" in str(err.value)
    assert yaml.safe_load((run / "config.yaml").read_text())["backbone"]["weights_sha256"] == then  # untouched


def test_the_old_files_named_in_the_config_make_the_run_work_again(trained, run, tmp_path, monkeypatch):
    root = trained[0]
    old = write_random_model(tmp_path / "old", seed=0)  # the files the run was trained with, kept aside
    ship_default(tmp_path / "shipped", 1, monkeypatch)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["backbone"].update(options=str(old[0]), weights=str(old[1]))
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert predict_and_evaluate(run, root, tmp_path) == [0, 0]
    moved = {"backbone.options": str(old[0]), "backbone.weights": str(old[1])}
    assert train(root, run, **{"train.epochs": 2}, **moved)["epochs_run"] == 2


def test_a_run_without_the_record_is_used_with_one_warning(trained, run, tmp_path, monkeypatch):
    root = trained[0]
    config = yaml.safe_load((run / "config.yaml").read_text())
    del config["backbone"]["options_sha256"], config["backbone"]["weights_sha256"]
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    ship_default(tmp_path / "shipped", 1, monkeypatch)  # cannot be told apart: not refused
    with pytest.warns(UncheckedBackboneWarning) as caught:
        assert predict_and_evaluate(run, root, tmp_path) == [0, 0]
    messages = [str(w.message) for w in caught if issubclass(w.category, UncheckedBackboneWarning)]
    assert len(messages) == 2  # one per command
    assert f"{run}: this run predates backbone hashes" in messages[0]
    assert "cannot be checked" in messages[0] and "previous 'default'" in messages[0]
    with pytest.warns(UncheckedBackboneWarning) as caught:
        assert train(root, run, **{"train.epochs": 2})["epochs_run"] == 2
    assert len([w for w in caught if issubclass(w.category, UncheckedBackboneWarning)]) == 1
    # the resumed run records the backbone it went on with
    assert yaml.safe_load((run / "config.yaml").read_text())["backbone"]["weights_sha256"] is not None


def test_a_run_config_trained_again_must_name_files_with_its_hashes(run, tmp_path, monkeypatch):
    from data.config import ConfigError
    from tasks.trainer import Trainer

    ship_default(tmp_path / "shipped", 1, monkeypatch)
    config = load_task_config(run / "config.yaml")
    with pytest.raises(ConfigError, match=r"backbone\.weights_sha256: expected the files of named model 'default'"):
        Trainer(config, tmp_path / "again", progress=False, log=quiet).run()
    assert not (tmp_path / "again").exists()


def test_a_layer_grid_keeps_finished_cells_only_on_their_backbone(run, tmp_path, monkeypatch):
    from tasks.experiments.layer_grid import check_finished_cells

    ship_default(tmp_path / "shipped", 0, monkeypatch)
    check_finished_cells(tmp_path, [run], {"name": "default"})
    ship_default(tmp_path / "shipped", 1, monkeypatch)
    with pytest.raises(RunDirError, match=r"Run the grid with --options/--weights"):
        check_finished_cells(tmp_path, [run], {"name": "default"})
