"""Releases of the shipped model: logs and results say which `default` a run used
(``default@v2``), ``default@vN`` loads only that release, and an old run's mismatch names the
release it was trained on (elmo_core/pretrained/versions.json, by content hash)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import elmo_core.models
from elmo_core import hub, load_bilm
from elmo_core.errors import ModelNotAvailableError
from elmo_core.io import file_sha256
from elmo_core.models import labelled_name, resolve, shipped_versions
from elmo_core.random_model import write_random_model
from golden_runs import PREVIOUS_DEFAULT, previous_default
from tasks.config import BackboneConfig
from tasks.errors import RunDirError
from tasks.features import backbone_identity, check_run_backbone

REPO = Path(__file__).resolve().parents[1]
RELEASES = shipped_versions()["default"]
LATEST = RELEASES[-1]["version"]


def release(version: str) -> dict:
    return next(r for r in RELEASES if r["version"] == version)


def test_the_record_holds_the_shipped_files_as_the_latest_release():
    options, weights = elmo_core.models.packaged_model_files("default")
    assert file_sha256(weights) == RELEASES[-1]["weights_sha256"]
    assert file_sha256(options) == RELEASES[-1]["options_sha256"]
    assert [r["version"] for r in RELEASES] == [f"v{i + 1}" for i in range(len(RELEASES))]
    assert all((REPO / r["card"]).is_file() for r in RELEASES)


def test_the_first_release_is_the_kept_v1_files():
    folder = PREVIOUS_DEFAULT / "default"
    assert file_sha256(folder / "weights.hdf5") == release("v1")["weights_sha256"]
    assert file_sha256(folder / "options.json") == release("v1")["options_sha256"]


def test_logs_name_the_release_that_is_shipped():
    assert labelled_name("default") == f"default@{LATEST}"
    assert backbone_identity(BackboneConfig(name="default")) == f"named model 'default@{LATEST}'"
    with previous_default():
        assert labelled_name("default") == "default@v1"
    assert labelled_name("original") == "original"  # official models have no release record


def test_a_recorded_hash_reads_as_its_release():
    from elmo_core.models import release_label

    assert release_label("default", release("v1")["weights_sha256"]) == "default@v1"
    assert release_label("default", RELEASES[-1]["weights_sha256"]) == f"default@{LATEST}"
    assert release_label("default", "0" * 64) == "default"


def test_files_no_release_had_are_not_given_a_label(tmp_path, monkeypatch):
    write_random_model(tmp_path / "default", seed=3)
    monkeypatch.setattr(elmo_core.models, "PACKAGED_DIR", tmp_path)
    assert labelled_name("default") == "default"
    with pytest.raises(ModelNotAvailableError, match=r"ships unversioned files as 'default'"):
        resolve(f"default@{LATEST}")


def test_a_release_label_loads_only_that_release():
    assert resolve(f"default@{LATEST}") == resolve("default")
    assert load_bilm(f"default@{LATEST}").num_layers == 3
    with previous_default():
        assert resolve("default@v1") == resolve("default")
        with pytest.raises(ModelNotAvailableError, match="ships default@v1.*default_backbone.md"):
            resolve(f"default@{LATEST}")
    with pytest.raises(ModelNotAvailableError, match=r"'default@v1' is not shipped.*default_backbone_v1\.md"):
        resolve("default@v1")
    with pytest.raises(ModelNotAvailableError, match=r"unknown release 'default@v99'; releases of 'default': "):
        hub.load("default@v99")


def test_an_old_run_on_another_release_is_told_which_release_it_needs(tmp_path):
    v1 = release("v1")
    recorded = BackboneConfig(name="default", options_sha256=v1["options_sha256"], weights_sha256=v1["weights_sha256"])
    with pytest.raises(RunDirError) as caught:
        check_run_backbone(tmp_path, recorded, BackboneConfig(name="default"), "Point it at the old files.")
    message = str(caught.value)
    assert f"than named model 'default@{LATEST}' is now" in message
    assert "(default@v1, model card docs/default_backbone_v1.md) recorded" in message


def ship_script():
    spec = importlib.util.spec_from_file_location(
        "ship_default_backbone", REPO / "benchmarks" / "ship_default_backbone.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipping_appends_a_release_and_files_the_previous_card(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    record_release = ship_script().record_release
    versions, shipped = tmp_path / "versions.json", tmp_path / "default" / "weights.hdf5"
    first, second = tmp_path / "run1", tmp_path / "run2"
    write_random_model(first, seed=1)
    write_random_model(second, seed=2)
    assert record_release(versions, first, shipped, None) == "v1"
    write_random_model(tmp_path / "default", seed=1)  # run1 is now the shipped default
    assert record_release(versions, second, shipped, tmp_path / "docs" / "default_backbone_v1.md") == "v2"
    assert record_release(versions, second, shipped, None) == "v2"  # shipping the same files again
    releases = json.loads(versions.read_text())["default"]
    assert [(r["version"], r["card"]) for r in releases] == [
        ("v1", "docs/default_backbone_v1.md"),
        ("v2", "docs/default_backbone.md"),
    ]
    assert releases[1]["weights_sha256"] == file_sha256(second / "weights.hdf5")
