"""One-file models (``elmo-tasks package``): a package predicts and evaluates exactly as its run
directory does, with an embedded backbone and with a named one; the manifest lists every member
with its sha256; packaging is reproducible; loading leaves nothing behind. The bad archives are
in tests/test_bad_input.py."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import elmo_core.models
from helpers import REPO, SENTENCES, quiet, write_conll, write_random_model
from tasks.cli import main
from tasks.errors import PackageError
from tasks.registry import load_task_config
from tasks.run_dir import load_run

NER = REPO / "configs" / "ner_conll2003.yaml"

torch.set_num_threads(1)


@dataclass
class Runs:
    root: Path
    options: Path
    weights: Path
    embedded: Path  # a run on a random backbone given as files
    named: Path  # a run on the shipped 'default' backbone
    test: Path  # a labelled file
    text: Path  # raw text


def train(root: Path, out: Path, **backbone) -> Path:
    """A two-epoch NER run; ``backbone``: its backbone keys (none given: without ELMo)."""
    from tasks.trainer import Trainer

    overrides = {
        "data.dir": str(root),
        "data.train": "train.txt",
        "data.dev": "dev.txt",
        "data.test": None,
        "backbone.store": None,
        "train.epochs": 2,
        "train.threads": 1,
        "model.hidden": 8,
        "model.words.min_count": 1,
        "model.words.pretrained": None,
        **{f"backbone.{key}": value for key, value in backbone.items()},
        "model.elmo.enabled": bool(backbone),
    }
    Trainer(load_task_config(NER, overrides), out, progress=False, log=quiet).run()
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    root = tmp_path_factory.mktemp("package")
    write_conll(root / "train.txt", SENTENCES * 2)
    write_conll(root / "dev.txt", SENTENCES[:3])
    test = write_conll(root / "test.txt", SENTENCES[3:] + SENTENCES[:2])
    text = root / "news.txt"
    text.write_text("Peter Blackburn visited Germany\nThe European Commission said\nBritain agreed\n")
    options, weights = write_random_model(root / "model")
    embedded = train(root, root / "embedded", name=None, options=str(options), weights=str(weights))
    named = train(root, root / "named", name="default")
    return Runs(root, options, weights, embedded, named, test, text)


def package(run: Path, output: Path, *args: str) -> Path:
    assert main(["package", str(run), "--output", str(output), *args]) == 0
    return output


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {info.name: tar.extractfile(info).read() for info in tar.getmembers()}


def outputs(source: Path, runs: Runs, tmp: Path, capsys) -> dict[str, bytes]:
    """What predict and evaluate write (files and printed scores) for ``source``."""
    tmp.mkdir()
    assert main(["predict", str(source), "--input", str(runs.text), "--output", str(tmp / "text.tags")]) == 0
    assert main(["predict", str(source), "--input", str(runs.test), "--output", str(tmp / "conll.tags")]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(source), "--data", str(runs.test), "--output", str(tmp / "eval.txt")]) == 0
    printed = capsys.readouterr().out.replace(str(tmp), "OUT")
    return {path.name: path.read_bytes() for path in sorted(tmp.iterdir())} | {"printed": printed.encode()}


@pytest.mark.parametrize("kind", ["embedded", "named"])
def test_a_package_predicts_and_evaluates_byte_for_byte_as_its_run(kind, runs, tmp_path, capsys):
    run = getattr(runs, kind)
    archive = package(run, tmp_path / "model.tar.gz")
    printed = capsys.readouterr().out
    from elmo_core.models import labelled_name

    named = f"named model '{labelled_name('default')}'"  # with the shipped release: 'default@v2'
    assert f"-> {archive}" in printed and (named if kind == "named" else "embedded") in printed
    names = list(members(archive))
    backbone = ["backbone/options.json", "backbone/weights.hdf5"] if kind == "embedded" else []
    assert names == ["manifest.json", "config.yaml", "vocab.json", "best.pt", "results.json", *backbone]
    from_run = outputs(run, runs, tmp_path / "from-run", capsys)
    from_package = outputs(archive, runs, tmp_path / "from-package", capsys)
    assert from_package == from_run
    assert b"f1" in from_run["printed"] and from_run["text.tags"].count(b"\n\n") == 3


def test_the_manifest_lists_every_member_with_its_sha256(runs, tmp_path):
    archive = package(runs.embedded, tmp_path / "model.tar.gz")
    found = members(archive)
    manifest = json.loads(found.pop("manifest.json"))
    assert manifest["format"] == "elmo-tasks-model" and manifest["format_version"] == 1
    assert manifest["elmo_tasks_version"] and manifest["task"] == "ner"
    assert manifest["files"] == {
        name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in found.items()
    }
    for name in ("config.yaml", "vocab.json", "best.pt", "results.json"):
        assert found[name] == (runs.embedded / name).read_bytes()
    assert found["backbone/weights.hdf5"] == runs.weights.read_bytes()
    assert manifest["backbone"] == {
        "kind": "embedded",
        "options": "backbone/options.json",
        "weights": "backbone/weights.hdf5",
        "options_sha256": hashlib.sha256(runs.options.read_bytes()).hexdigest(),
        "weights_sha256": hashlib.sha256(runs.weights.read_bytes()).hexdigest(),
    }
    with tarfile.open(archive, "r:gz") as tar:  # regular files, no times or owners
        assert all(info.isfile() and info.mtime == 0 and info.uid == 0 and not info.uname for info in tar)


def test_packaging_is_reproducible(runs, tmp_path):
    first = package(runs.named, tmp_path / "a.tar.gz").read_bytes()
    assert package(runs.named, tmp_path / "b.tar.gz").read_bytes() == first
    manifest = json.loads(members(tmp_path / "a.tar.gz")["manifest.json"])
    default_weights = elmo_core.models.PACKAGED_DIR / "default" / "weights.hdf5"
    assert manifest["backbone"] == {
        "kind": "named",
        "name": "default",
        "options_sha256": hashlib.sha256((default_weights.parent / "options.json").read_bytes()).hexdigest(),
        "weights_sha256": hashlib.sha256(default_weights.read_bytes()).hexdigest(),
    }


def test_embed_backbone_puts_a_named_model_in_the_package(runs, tmp_path, capsys):
    archive = package(runs.named, tmp_path / "model.tar.gz", "--embed-backbone")
    found = members(archive)
    assert found["backbone/weights.hdf5"] == (elmo_core.models.PACKAGED_DIR / "default" / "weights.hdf5").read_bytes()
    assert json.loads(found["manifest.json"])["backbone"]["kind"] == "embedded"
    test = tmp_path / "pred"
    test.mkdir()
    for source, name in ((runs.named, "run.tags"), (archive, "package.tags")):
        assert main(["predict", str(source), "--input", str(runs.text), "--output", str(test / name)]) == 0
    assert (test / "run.tags").read_bytes() == (test / "package.tags").read_bytes()


def test_files_identical_to_a_shipped_model_are_referenced_by_its_name(runs, tmp_path, monkeypatch):
    """A run whose config names files byte-identical to a named model is packaged by name; when
    that model differs on the loading machine, the package is refused, saying what it expected."""
    shipped = tmp_path / "pretrained"
    shutil.copytree(runs.options.parent, shipped / "tiny")
    monkeypatch.setattr(elmo_core.models, "PACKAGED_DIR", shipped)
    archive = package(runs.embedded, tmp_path / "model.tar.gz")
    manifest = json.loads(members(archive)["manifest.json"])
    assert manifest["backbone"]["kind"] == "named" and manifest["backbone"]["name"] == "tiny"
    assert "backbone/weights.hdf5" not in manifest["files"]
    trained = load_run(archive)
    assert (trained.task.config.backbone.name, trained.task.config.backbone.options) == ("tiny", None)
    write_random_model(shipped / "tiny", seed=1)  # 'tiny' on this machine is now another model
    with pytest.raises(PackageError, match="backbone does not match: .*'tiny' whose weights have sha256"):
        load_run(archive)


def test_loading_a_package_leaves_nothing_behind(runs, tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    archive = package(runs.embedded, tmp_path / "model.tar.gz")
    trained = load_run(archive)
    assert list(scratch.iterdir()) == []
    backbone = trained.task.config.backbone
    assert (backbone.name, backbone.options) == (None, f"{archive}#backbone/options.json")
    split, predictions, _ = trained.predict_file(runs.text, "text")  # the backbone is in memory
    assert len(predictions) == 3


def test_a_run_without_elmo_is_packaged_without_a_backbone(runs, tmp_path):
    run = train(runs.root, tmp_path / "run")
    archive = package(run, tmp_path / "plain.tar.gz", "--embed-backbone")
    manifest = json.loads(members(archive)["manifest.json"])
    assert manifest["backbone"] is None and "backbone/weights.hdf5" not in manifest["files"]
    assert load_run(archive).bilm is None
