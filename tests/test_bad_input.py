"""Every bad input to every verb is one clear line: exit code 2, no traceback, and the message
names the file (and the line or key where there is one).

Each case builds its tiny bad input in its own ``tmp_path`` and runs ``tasks.cli.main([...])`` in
this process; the trained runs they start from are made once per module (seconds).
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import pytest
import torch

from helpers import NEGATIVE, POSITIVE, REPO, SENTENCES, quiet, write_conll, write_random_model, write_trees, write_wsd
from tasks.cli import main
from tasks.registry import load_task_config
from tasks.trainer import Trainer

NER = REPO / "configs" / "ner_conll2003.yaml"
SST5 = REPO / "configs" / "sst5.yaml"
WSD = REPO / "configs" / "wsd.yaml"
BILM_TINY = REPO / "configs" / "bilm_tiny.yaml"

torch.set_num_threads(1)


@dataclass
class Env:
    root: Path
    options: Path
    weights: Path
    ner_run: Path
    sst_run: Path
    conll: Path  # a good CoNLL file
    corpus: Path  # a good pretraining corpus
    ner_package: Path | None = None  # the NER run packaged (its random backbone embedded)

    def backbone(self) -> list[str]:
        return ["--options", str(self.options), "--weights", str(self.weights)]

    def ner_set(self, data_dir: Path | None = None, **extra) -> list[str]:
        """``--set`` arguments of a tiny NER run reading train.txt / dev.txt in ``data_dir``."""
        values = {
            "data.dir": str(data_dir or self.root),
            "data.train": "train.txt",
            "data.dev": "dev.txt",
            "data.test": None,
            "backbone.name": None,
            "backbone.options": str(self.options),
            "backbone.weights": str(self.weights),
            "backbone.store": None,
            "train.epochs": 1,
            "train.threads": 1,
            "model.hidden": 8,
            "model.words.min_count": 1,
            "model.words.pretrained": None,  # no GloVe: nothing here needs it
            **extra,
        }
        return [arg for key, value in values.items() for arg in ("--set", f"{key}={json.dumps(value)}")]

    def ner_overrides(self) -> dict:
        args = self.ner_set()
        return {a.split("=", 1)[0]: json.loads(a.split("=", 1)[1]) for a in args[1::2]}

    def copy_run(self, target: Path, run: Path | None = None) -> Path:
        return Path(shutil.copytree(run or self.ner_run, target))


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    return make_env(tmp_path_factory.mktemp("bad-input"))


def make_env(root: Path) -> Env:
    """A tiny random backbone, a trained NER run and a trained SST run (one epoch each)."""
    options, weights = write_random_model(root / "model")
    conll = write_conll(root / "train.txt", SENTENCES * 2)
    write_conll(root / "dev.txt", SENTENCES[:3])
    corpus = root / "corpus.txt"
    corpus.write_text("".join(f"the {w} saw a {w} .\n" for w in ("dog", "cat", "bird", "fish") * 5))
    env = Env(root, options, weights, root / "ner-run", root / "sst-run", conll, corpus)
    Trainer(load_task_config(NER, env.ner_overrides()), env.ner_run, progress=False, log=quiet).run()
    sst = root / "sst"
    sst.mkdir()
    rows = [(w, 4) for w in POSITIVE] + [(w, 0) for w in NEGATIVE]
    for name in ("train.txt", "dev.txt", "test.txt"):
        write_trees(sst / name, rows)
    sst_config = load_task_config(
        SST5,
        {
            "data.dir": str(sst),
            "backbone.name": None,
            "backbone.options": str(options),
            "backbone.weights": str(weights),
            "train.epochs": 1,
            "train.threads": 1,
            "model.hidden": 8,
            "model.mlp": [8],
        },
    )
    Trainer(sst_config, env.sst_run, progress=False, log=quiet).run()
    from tasks.cli.package import package

    env.ner_package = root / "ner.tar.gz"
    package(env.ner_run, env.ner_package)
    return env


@dataclass
class Ctx:
    env: Env
    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    cleanup: list = field(default_factory=list)  # run after main() returned
    checks: list = field(default_factory=list)  # more assertions, run after main() returned

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def read_only_dir(self, name: str) -> Path:
        """A directory nobody may write in (as root, where permissions do not bind, os.access says so)."""
        path = self.tmp / name
        path.mkdir()
        path.chmod(0o555)
        if os.access(path, os.W_OK):  # root
            real = os.access
            self.monkeypatch.setattr(
                os, "access", lambda p, mode, *a, **k: False if Path(p) == path else real(p, mode, *a, **k)
            )
        return path

    def hold_lock(self, path: Path) -> None:
        """Hold the lock file ``path`` as another process would (two opens' flocks exclude each other)."""
        from elmo_core.io import FileLock

        lock = FileLock(path)
        lock.acquire()
        self.cleanup.append(lock.release)


CASES = {}


def case(function):
    CASES[function.__name__] = function
    return function


# ---------------------------------------------------------------- embed
def embed(ctx: Ctx, *args: str) -> list[str]:
    return ["embed", *ctx.env.backbone(), "--quiet", *args]


@case
def embed_input_missing(ctx):
    return embed(ctx, "--input", str(ctx.tmp / "nope.txt"), "--output", str(ctx.tmp / "o.hdf5")), ["nope.txt"]


@case
def embed_input_is_a_directory(ctx):
    return embed(ctx, "--input", str(ctx.tmp), "--output", str(ctx.tmp / "o.hdf5")), [
        str(ctx.tmp),
        "is a directory",
    ]


@case
def embed_input_empty_line(ctx):
    path = ctx.file("in.txt", "a b\n\nc\n")
    return embed(ctx, "--input", str(path), "--output", str(ctx.tmp / "o.hdf5")), [f"{path}:2", "empty sentence"]


@case
def embed_input_not_utf8(ctx):
    path = ctx.file("in.txt", b"a b\nc \xff d\n")
    return embed(ctx, "--input", str(path), "--output", str(ctx.tmp / "o.hdf5")), [f"{path}:2", "UTF-8"]


@case
def embed_output_is_a_directory(ctx):
    path = ctx.file("in.txt", "a b\n")
    (ctx.tmp / "out").mkdir()
    return embed(ctx, "--input", str(path), "--output", str(ctx.tmp / "out")), [
        str(ctx.tmp / "out"),
        "is a directory",
    ]


@case
def embed_output_directory_missing(ctx):
    path = ctx.file("in.txt", "a b\n")
    return embed(ctx, "--input", str(path), "--output", str(ctx.tmp / "no" / "o.hdf5")), [
        str(ctx.tmp / "no"),
        "does not exist",
    ]


@case
def embed_output_directory_read_only(ctx):
    path = ctx.file("in.txt", "a b\n")
    locked = ctx.read_only_dir("ro")
    return embed(ctx, "--input", str(path), "--output", str(locked / "o.hdf5")), [str(locked), "not writable"]


@case
def embed_batch_size_zero(ctx):
    path = ctx.file("in.txt", "a b\n")
    return embed(ctx, "--input", str(path), "--output", str(ctx.tmp / "o.hdf5"), "--batch-size", "0"), [
        "--batch-size must be >= 1"
    ]


@case
def embed_batch_size_negative(ctx):
    path = ctx.file("in.txt", "a b\n")
    return embed(ctx, "--input", str(path), "--output", str(ctx.tmp / "o.hdf5"), "--batch-size", "-4"), [
        "--batch-size must be >= 1, got -4"
    ]


@case
def embed_threads_negative(ctx):
    path = ctx.file("in.txt", "a b\n")
    return embed(ctx, "--input", str(path), "--output", str(ctx.tmp / "o.hdf5"), "--threads", "-1"), [
        "--threads must be >= 0"
    ]


@case
def embed_store_is_a_file(ctx):
    path = ctx.file("in.txt", "a b\n")
    store = ctx.file("store", "not a folder")
    return embed(ctx, "--input", str(path), "--store", str(store)), [str(store), "not a directory"]


def built_store(ctx: Ctx) -> tuple[Path, Path]:
    text = ctx.file("in.txt", "a b\nc d e\n")
    store = ctx.tmp / "store"
    assert main(embed(ctx, "--input", str(text), "--store", str(store))) == 0
    return text, store


@case
def embed_store_json_broken(ctx):
    text, store = built_store(ctx)
    (store / "store.json").write_text('{"format": 1, "model_id": ')
    return embed(ctx, "--input", str(text), "--store", str(store)), [str(store / "store.json"), "JSON"]


@case
def embed_store_json_missing_key(ctx):
    text, store = built_store(ctx)
    info = json.loads((store / "store.json").read_text())
    del info["num_layers"]
    (store / "store.json").write_text(json.dumps(info))
    return embed(ctx, "--input", str(text), "--store", str(store)), [str(store / "store.json"), "num_layers"]


@case
def embed_store_index_broken(ctx):
    text, store = built_store(ctx)
    (store / "index.tsv").write_text("abc\tr0-000001.npy\tseven\n")
    return embed(ctx, "--input", str(text), "--store", str(store)), [f"{store / 'index.tsv'}:1"]


@case
def embed_store_held_no_wait(ctx):
    text, store = built_store(ctx)
    ctx.hold_lock(store / "locks" / "r0.lock")
    return embed(ctx, "--input", str(text), "--store", str(store), "--no-wait"), [
        str(store / "locks" / "r0.lock"),
        f"PID {os.getpid()}",
    ]


@case
def embed_options_not_json(ctx):
    path = ctx.file("in.txt", "a b\n")
    options = ctx.file("options.json", "{lstm: ")
    argv = ["embed", "--options", str(options), "--weights", str(ctx.env.weights), "--input", str(path)]
    return argv + ["--output", str(ctx.tmp / "o.hdf5")], [str(options), "JSON"]


@case
def embed_options_is_a_directory(ctx):
    path = ctx.file("in.txt", "a b\n")
    argv = ["embed", "--options", str(ctx.tmp), "--weights", str(ctx.env.weights), "--input", str(path)]
    return argv + ["--output", str(ctx.tmp / "o.hdf5")], [str(ctx.tmp), "is a directory"]


@case
def embed_weights_random_bytes(ctx):
    path = ctx.file("in.txt", "a b\n")
    weights = ctx.file("w.hdf5", os.urandom(4096))
    argv = ["embed", "--options", str(ctx.env.options), "--weights", str(weights), "--input", str(path)]
    return argv + ["--output", str(ctx.tmp / "o.hdf5")], [str(weights), "not an HDF5 file"]


@case
def embed_weights_missing_dataset(ctx):
    path = ctx.file("in.txt", "a b\n")
    weights = ctx.file("w.hdf5", ctx.env.weights.read_bytes())
    with h5py.File(weights, "a") as handle:
        del handle["CNN_proj/W_proj"]
    argv = ["embed", "--options", str(ctx.env.options), "--weights", str(weights), "--input", str(path)]
    return argv + ["--output", str(ctx.tmp / "o.hdf5")], [str(weights), "CNN_proj/W_proj"]


@case
def embed_weights_is_a_directory(ctx):
    path = ctx.file("in.txt", "a b\n")
    argv = ["embed", "--options", str(ctx.env.options), "--weights", str(ctx.tmp), "--input", str(path)]
    return argv + ["--output", str(ctx.tmp / "o.hdf5")], [str(ctx.tmp), "is a directory"]


# ---------------------------------------------------------------- train
def train(ctx: Ctx, *args: str, data_dir: Path | None = None, **extra) -> list[str]:
    return ["train", str(NER), "--quiet", *ctx.env.ner_set(data_dir, **extra), *args]


def data_dir(ctx: Ctx, train_text: str | None = None) -> Path:
    folder = ctx.tmp / "data"
    folder.mkdir(exist_ok=True)
    (folder / "train.txt").write_text(train_text or ctx.env.conll.read_text())
    shutil.copy(ctx.env.root / "dev.txt", folder / "dev.txt")
    return folder


@case
def train_config_missing(ctx):
    return ["train", str(ctx.tmp / "nope.yaml")], [str(ctx.tmp / "nope.yaml")]


@case
def train_config_not_yaml(ctx):
    config = ctx.file("c.yaml", "task: ner\ndata: [unclosed\n")
    return ["train", str(config)], [f"{config}:3: invalid YAML", "flow sequence that starts on line 2"]


@case
def train_config_is_a_directory(ctx):
    return ["train", str(ctx.tmp)], [str(ctx.tmp)]


@case
def train_conll_bad_line(ctx):
    folder = data_dir(ctx, "EU NN I-NP I-ORG\nrejects NN\n\n")
    return train(ctx, "--out", str(ctx.tmp / "run"), data_dir=folder), [f"{folder / 'train.txt'}:2"]


@case
def train_conll_is_a_directory(ctx):
    folder = data_dir(ctx)
    (folder / "train.txt").unlink()
    (folder / "train.txt").mkdir()
    return train(ctx, "--out", str(ctx.tmp / "run"), data_dir=folder), [str(folder / "train.txt"), "is a directory"]


@case
def train_out_is_a_file(ctx):
    out = ctx.file("run", "")
    return train(ctx, "--out", str(out)), [str(out), "not a directory"]


@case
def train_out_under_a_file(ctx):
    blocker = ctx.file("blocker", "")
    return train(ctx, "--out", str(blocker / "run")), [str(blocker), "not a directory"]


@case
def train_out_read_only(ctx):
    locked = ctx.read_only_dir("ro")
    return train(ctx, "--out", str(locked / "run")), [str(locked), "not writable"]


@case
def train_out_held_no_wait(ctx):
    out = ctx.tmp / "run"
    ctx.hold_lock(out / ".lock")
    return train(ctx, "--out", str(out), "--no-wait"), [str(out / ".lock"), f"PID {os.getpid()}"]


@case
def train_out_held_env_no_wait(ctx):
    out = ctx.tmp / "run"
    ctx.hold_lock(out / ".lock")
    ctx.monkeypatch.setenv("ELMO_TASKS_NO_WAIT", "1")
    return train(ctx, "--out", str(out)), [str(out / ".lock"), f"PID {os.getpid()}"]


@case
def train_store_is_a_file(ctx):
    store = ctx.file("store", "x")
    return train(ctx, "--out", str(ctx.tmp / "run"), **{"backbone.store": str(store)}), [str(store), "not a directory"]


@case
def train_store_chunk_damaged(ctx):
    store = ctx.tmp / "store"
    assert main(train(ctx, "--out", str(ctx.tmp / "first"), **{"backbone.store": str(store)})) == 0
    (chunk,) = (store / "chunks").glob("*.npy")
    chunk.write_bytes(chunk.read_bytes()[:100])
    return train(ctx, "--out", str(ctx.tmp / "run"), **{"backbone.store": str(store)}), [str(chunk), "damaged"]


def full_disk(ctx: Ctx, name: str = "full", size: str = "64k") -> Path:
    """A tiny tmpfs (root only; the test is skipped elsewhere): writes past ``size`` get ENOSPC."""
    path = ctx.tmp / name
    path.mkdir()
    mounted = os.geteuid() == 0 and (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )
    if not mounted:
        pytest.skip("needs root and mount -t tmpfs (the ENOSPC path is also tested with a fake writer)")
    ctx.cleanup.append(
        lambda: (
            subprocess.run(["umount", str(path)], capture_output=True).returncode == 0
            or subprocess.run(["umount", "-l", str(path)], capture_output=True)
        )  # busy: detach it anyway
    )
    return path


@case
def embed_output_disk_full_tmpfs(ctx):
    text = ctx.file("in.txt", "".join(f"w{i} x y z a b c d e f\n" for i in range(60)))
    target = full_disk(ctx) / "out.hdf5"
    ctx.checks.append(lambda: not target.exists() and not list(target.parent.iterdir()))
    return embed(ctx, "--input", str(text), "--output", str(target)), [str(target), "No space left on device"]


@case
def train_out_disk_full_tmpfs(ctx):
    """torch.save reports a full disk as a RuntimeError: still one line naming the checkpoint."""
    out = full_disk(ctx, size="48k") / "run"
    ctx.checks.append(lambda: not list(out.glob("*.part")))
    return train(ctx, "--out", str(out), **{"model.hidden": 64}), [str(out), "No space left on device"]


@case
def train_resume_config_yaml_broken(ctx):
    run = ctx.env.copy_run(ctx.tmp / "run")
    (run / "config.yaml").write_text("task: ner\n  data: [\n")
    return train(ctx, "--out", str(run)), [str(run / "config.yaml"), "at line 2"]


@case
def train_resume_last_pt_truncated(ctx):
    run = ctx.env.copy_run(ctx.tmp / "run")
    (run / "last.pt").write_bytes((run / "last.pt").read_bytes()[:300])
    return train(ctx, "--out", str(run), **{"train.epochs": 2}), [str(run / "last.pt")]


@case
def train_sst_bad_tree(ctx):
    folder = ctx.tmp / "sst"
    folder.mkdir()
    write_trees(folder / "train.txt", [("a great movie", 4), ("awful", 0)])
    write_trees(folder / "dev.txt", [("great", 4)])
    with (folder / "train.txt").open("a") as handle:
        handle.write("(4 (2 unbalanced)\n")
    argv = ["train", str(SST5), "--quiet", "--out", str(ctx.tmp / "run")]
    sets = {"data.dir": str(folder), "data.test": None, "model.elmo.enabled": False, "model.words.dim": 8}
    return argv + [a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v)}")], [f"{folder / 'train.txt'}:3"]


@case
def train_tsv_unseen_label(ctx):
    folder = ctx.tmp / "tsv"
    folder.mkdir()
    (folder / "train.txt").write_text("a great movie\t4\nawful\t0\n")
    (folder / "dev.txt").write_text("great\t4\nmeh\t7\n")
    argv = ["train", str(SST5), "--quiet", "--out", str(ctx.tmp / "run")]
    sets = {
        "data.dir": str(folder),
        "data.format": "tsv",
        "data.test": None,
        "model.elmo.enabled": False,
        "model.words.dim": 8,
    }
    return argv + [a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v)}")], [f"{folder / 'dev.txt'}:2"]


def wsd_train(ctx: Ctx, folder: Path, **extra) -> list[str]:
    sets = {
        "data.dir": str(folder),
        "data.test": None,
        "backbone.name": None,
        "backbone.options": str(ctx.env.options),
        "backbone.weights": str(ctx.env.weights),
        "train.epochs": 1,
        "model.sense_dim": 8,
        **extra,
    }
    argv = ["train", str(WSD), "--quiet", "--out", str(ctx.tmp / "run")]
    return argv + [a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v)}")]


def wsd_data(ctx: Ctx) -> Path:
    from helpers import MONEY, PLANT, RIVER, require_wordnet

    require_wordnet()
    write_wsd(ctx.tmp, "semcor", [MONEY, RIVER])
    write_wsd(ctx.tmp, "semeval2007", [RIVER, PLANT], prefix="semeval2007.")
    return ctx.tmp


@case
def train_wsd_xml_broken(ctx):
    folder = wsd_data(ctx)
    xml = folder / "semcor" / "semcor.data.xml"
    lines = xml.read_text().splitlines()
    lines[4] = lines[4].replace("</wf>", "</instance>")
    xml.write_text("\n".join(lines) + "\n")
    return wsd_train(ctx, folder), [f"{xml}:5"]


@case
def train_wsd_gold_key_line_broken(ctx):
    folder = wsd_data(ctx)
    key = folder / "semcor" / "semcor.gold.key.txt"
    key.write_text(key.read_text() + "lonely-id\n")
    return wsd_train(ctx, folder), [f"{key}:"]


@case
def train_wsd_wordnet_dir_empty(ctx):
    folder = wsd_data(ctx)
    wordnet = ctx.tmp / "wordnet"
    wordnet.mkdir()
    return wsd_train(ctx, folder, **{"data.wordnet": str(wordnet)}), [str(wordnet)]


@case
def train_pretrained_vectors_broken(ctx):
    vectors = ctx.file("vectors.txt", "the 0.1 0.2 0.3\ncat 0.1 oops 0.3\n")
    sets = {"model.words.pretrained": str(vectors), "model.words.dim": 3}
    return train(ctx, "--out", str(ctx.tmp / "run"), **sets), [f"{vectors}:2", "oops"]


# ---------------------------------------------------------------- evaluate
def evaluate(run: Path, data: Path, *args: str) -> list[str]:
    return ["evaluate", str(run), "--data", str(data), *args]


@case
def evaluate_run_dir_missing(ctx):
    return evaluate(ctx.tmp / "nope", ctx.env.conll), [str(ctx.tmp / "nope"), "not found", "run directory"]


@case
def evaluate_run_dir_is_a_file(ctx):
    path = ctx.file("run", "x")
    return evaluate(path, ctx.env.conll), [str(path), "not a model package", "run directory"]


@case
def evaluate_best_pt_missing(ctx):
    run = ctx.env.copy_run(ctx.tmp / "run")
    (run / "best.pt").unlink()
    return evaluate(run, ctx.env.conll), [str(run / "best.pt"), "missing"]


@case
def evaluate_best_pt_truncated(ctx):
    run = ctx.env.copy_run(ctx.tmp / "run")
    (run / "best.pt").write_bytes((run / "best.pt").read_bytes()[:500])
    return evaluate(run, ctx.env.conll), [str(run / "best.pt"), "damaged"]


@case
def evaluate_best_pt_random_bytes(ctx):
    run = ctx.env.copy_run(ctx.tmp / "run")
    (run / "best.pt").write_bytes(os.urandom(2048))
    return evaluate(run, ctx.env.conll), [str(run / "best.pt"), "cannot be read as a checkpoint"]


@case
def evaluate_best_pt_of_another_task(ctx):
    run = ctx.env.copy_run(ctx.tmp / "run")
    shutil.copy(ctx.env.sst_run / "best.pt", run / "best.pt")
    return evaluate(run, ctx.env.conll), [str(run / "best.pt"), "another run"]


@case
def evaluate_best_pt_not_a_dict(ctx):
    run = ctx.env.copy_run(ctx.tmp / "run")
    torch.save([1, 2, 3], run / "best.pt")
    return evaluate(run, ctx.env.conll), [str(run / "best.pt"), "belongs to another run"]


@case
def evaluate_vocab_json_broken(ctx):
    run = ctx.env.copy_run(ctx.tmp / "run")
    (run / "vocab.json").write_text('{"words": [')
    return evaluate(run, ctx.env.conll), [str(run / "vocab.json"), "damaged at line 1"]


@case
def evaluate_vocab_json_of_another_task(ctx):
    run = ctx.env.copy_run(ctx.tmp / "run")
    shutil.copy(ctx.env.sst_run / "vocab.json", run / "vocab.json")
    return evaluate(run, ctx.env.conll), [str(run / "vocab.json")]


@case
def evaluate_vocab_json_wrong_types(ctx):
    run = ctx.env.copy_run(ctx.tmp / "run")
    vocab = json.loads((run / "vocab.json").read_text())
    vocab = {key: 7 for key in vocab}
    (run / "vocab.json").write_text(json.dumps(vocab))
    return evaluate(run, ctx.env.conll), [str(run / "vocab.json"), "TypeError"]


@case
def evaluate_config_yaml_broken(ctx):
    run = ctx.env.copy_run(ctx.tmp / "run")
    (run / "config.yaml").write_text("task: ner\n  data: [\n")
    return evaluate(run, ctx.env.conll), [str(run / "config.yaml"), "damaged at line 2"]


@case
def evaluate_config_yaml_unknown_key(ctx):
    run = ctx.env.copy_run(ctx.tmp / "run")
    (run / "config.yaml").write_text((run / "config.yaml").read_text() + "bogus: 1\n")
    return evaluate(run, ctx.env.conll), [str(run / "config.yaml"), "bogus"]


@case
def evaluate_config_yaml_other_task(ctx):
    run = ctx.env.copy_run(ctx.tmp / "run")
    shutil.copy(ctx.env.sst_run / "config.yaml", run / "config.yaml")
    return evaluate(run, ctx.env.conll), [str(run)]


@case
def evaluate_data_missing(ctx):
    return evaluate(ctx.env.ner_run, ctx.tmp / "nope.txt"), [str(ctx.tmp / "nope.txt")]


@case
def evaluate_data_is_a_directory(ctx):
    return evaluate(ctx.env.ner_run, ctx.tmp), [str(ctx.tmp), "is a directory"]


@case
def evaluate_data_bad_line(ctx):
    data = ctx.file("test.txt", "EU NN I-NP I-ORG\n\nPeter NN I-NP\n")
    return evaluate(ctx.env.ner_run, data), [f"{data}:3"]


@case
def evaluate_output_is_a_directory(ctx):
    (ctx.tmp / "out").mkdir()
    return evaluate(ctx.env.ner_run, ctx.env.conll, "--output", str(ctx.tmp / "out")), [
        str(ctx.tmp / "out"),
        "is a directory",
    ]


@case
def evaluate_output_directory_missing(ctx):
    target = ctx.tmp / "no" / "pred.txt"
    return evaluate(ctx.env.ner_run, ctx.env.conll, "--output", str(target)), [str(target.parent), "does not exist"]


@case
def evaluate_output_disk_full(ctx):
    """ENOSPC while the predictions are written: one line naming the file, no PATH.part left."""
    import elmo_core.io

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    ctx.monkeypatch.setattr(elmo_core.io.os, "fsync", full)
    target = ctx.tmp / "pred.txt"
    return evaluate(ctx.env.ner_run, ctx.env.conll, "--output", str(target)), [
        str(target),
        "No space left on device",
    ]


# ---------------------------------------------------------------- predict
def predict(run: Path, source: Path, output: Path, *args: str) -> list[str]:
    return ["predict", str(run), "--input", str(source), "--output", str(output), *args]


@case
def predict_input_missing(ctx):
    return predict(ctx.env.ner_run, ctx.tmp / "nope.txt", ctx.tmp / "o.txt"), [str(ctx.tmp / "nope.txt")]


@case
def predict_input_is_a_directory(ctx):
    return predict(ctx.env.ner_run, ctx.tmp, ctx.tmp / "o.txt"), [str(ctx.tmp), "is a directory"]


@case
def predict_input_not_utf8(ctx):
    source = ctx.file("in.txt", b"EU rejects\nGerman \xfe call\n")
    return predict(ctx.env.ner_run, source, ctx.tmp / "o.txt"), [f"{source}:2"]


@case
def predict_input_empty(ctx):
    source = ctx.file("in.txt", "")
    return predict(ctx.env.ner_run, source, ctx.tmp / "o.txt"), [str(source)]


@case
def predict_output_is_a_directory(ctx):
    source = ctx.file("in.txt", "EU rejects German call\n")
    (ctx.tmp / "out").mkdir()
    return predict(ctx.env.ner_run, source, ctx.tmp / "out"), [str(ctx.tmp / "out"), "is a directory"]


@case
def predict_output_directory_read_only(ctx):
    source = ctx.file("in.txt", "EU rejects German call\n")
    locked = ctx.read_only_dir("ro")
    return predict(ctx.env.ner_run, source, locked / "o.txt"), [str(locked), "not writable"]


@case
def predict_output_directory_missing(ctx):
    source = ctx.file("in.txt", "EU rejects German call\n")
    return predict(ctx.env.ner_run, source, ctx.tmp / "no" / "o.txt"), [str(ctx.tmp / "no"), "does not exist"]


@case
def predict_sst_run_bad_tree(ctx):
    source = ctx.file("in.txt", "(4 (2 great) (2 fun)\n")
    return predict(ctx.env.sst_run, source, ctx.tmp / "o.txt", "--format", "labelled"), [f"{source}:1"]


@case
def predict_text_whitespace_only(ctx):
    source = ctx.file("in.txt", " \n\t\r\n  \n")
    return predict(ctx.env.ner_run, source, ctx.tmp / "o.jsonl"), [str(source), "no text"]


@case
def predict_sst_run_text_whitespace_only(ctx):
    source = ctx.file("in.txt", "\n\n \u00a0\n")
    return predict(ctx.env.sst_run, source, ctx.tmp / "o.jsonl", "--format", "text"), [str(source), "no text"]


@case
def predict_text_nul_character(ctx):
    source = ctx.file("in.txt", "EU rejects German call.\r\nPeter\x00Blackburn\n")
    return predict(ctx.env.ner_run, source, ctx.tmp / "o.jsonl", "--format", "text"), [f"{source}:2", "NUL"]


@case
def predict_utf16_file(ctx):
    source = ctx.file("in.txt", "EU rejects German call\n".encode("utf-16"))
    return predict(ctx.env.ner_run, source, ctx.tmp / "o.jsonl"), [f"{source}:1", "UTF-8"]


@case
def predict_text_not_utf8_after_mixed_newlines(ctx):
    source = ctx.file("in.txt", b"EU rejects.\r\nGerman call\rPeter\nBlackburn \xe9t\xe9\n")
    return predict(ctx.env.ner_run, source, ctx.tmp / "o.jsonl", "--format", "text"), [f"{source}:3", "UTF-8"]


@case
def predict_tokenized_blank_line(ctx):
    source = ctx.file("in.txt", "EU rejects\n \t\nGerman call\n")
    return predict(ctx.env.ner_run, source, ctx.tmp / "o.txt", "--format", "tokenized"), [
        f"{source}:2",
        "empty sentence",
    ]


@case
def predict_conll_empty_token(ctx):
    source = ctx.file("in.txt", "EU\tNNP\tI-NP\tI-ORG\n\tVBZ\tI-VP\tO\n")
    return predict(ctx.env.ner_run, source, ctx.tmp / "o.txt", "--format", "conll"), [f"{source}:2", "empty token"]


@case
def embed_text_whitespace_only(ctx):
    path = ctx.file("in.txt", "\r\n \t \n")
    return embed(ctx, "--input", str(path), "--output", str(ctx.tmp / "o.hdf5"), "--format", "text"), [
        str(path),
        "no text",
    ]


@case
def embed_input_nul_character(ctx):
    path = ctx.file("in.txt", "a b\nc\x00 d\n")
    return embed(ctx, "--input", str(path), "--output", str(ctx.tmp / "o.hdf5")), [f"{path}:2", "NUL"]


@case
def embed_text_not_utf8(ctx):
    path = ctx.file("in.txt", b"The dog.\r\nIt barked.\n\xff\n")
    return embed(ctx, "--input", str(path), "--output", str(ctx.tmp / "o.hdf5"), "--format", "text"), [
        f"{path}:3",
        "UTF-8",
    ]


@case
def embed_conll_empty_token(ctx):
    path = ctx.file("in.txt", "EU\tNNP\tB-ORG\n\tNN\tO\n")
    return embed(ctx, "--input", str(path), "--output", str(ctx.tmp / "o.hdf5"), "--format", "conll"), [
        f"{path}:2",
        "empty token",
    ]


# ---------------------------------------------------------------- package, and packages given to evaluate / predict
def package(run: Path, output: Path, *args: str) -> list[str]:
    return ["package", str(run), "--output", str(output), *args]


@case
def package_run_dir_missing(ctx):
    return package(ctx.tmp / "nope", ctx.tmp / "m.tar.gz"), [str(ctx.tmp / "nope"), "not a directory"]


@case
def package_run_dir_best_pt_missing(ctx):
    run = ctx.env.copy_run(ctx.tmp / "run")
    (run / "best.pt").unlink()
    return package(run, ctx.tmp / "m.tar.gz"), [str(run / "best.pt"), "missing"]


@case
def package_run_dir_best_pt_truncated(ctx):
    """The run is loaded before anything is written: a damaged run makes no package."""
    run = ctx.env.copy_run(ctx.tmp / "run")
    (run / "best.pt").write_bytes((run / "best.pt").read_bytes()[:500])
    ctx.checks.append(lambda: not (ctx.tmp / "m.tar.gz").exists())
    return package(run, ctx.tmp / "m.tar.gz"), [str(run / "best.pt"), "damaged"]


@case
def package_output_is_a_directory(ctx):
    (ctx.tmp / "out").mkdir()
    return package(ctx.env.ner_run, ctx.tmp / "out"), [str(ctx.tmp / "out"), "is a directory"]


@case
def package_output_directory_missing(ctx):
    target = ctx.tmp / "no" / "m.tar.gz"
    return package(ctx.env.ner_run, target), [str(target.parent), "does not exist"]


@case
def package_output_directory_read_only(ctx):
    locked = ctx.read_only_dir("ro")
    return package(ctx.env.ner_run, locked / "m.tar.gz"), [str(locked), "not writable"]


@case
def package_output_disk_full(ctx):
    """ENOSPC while the archive is written: one line naming it, no PATH.part and no archive left."""
    import elmo_core.io

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    ctx.monkeypatch.setattr(elmo_core.io.os, "fsync", full)
    target = ctx.tmp / "m.tar.gz"
    ctx.checks.append(lambda: not target.exists())
    return package(ctx.env.ner_run, target), [str(target), "No space left on device"]


def repack(
    ctx: Ctx,
    edit_manifest=None,
    replace: dict[str, bytes] | None = None,
    drop: tuple[str, ...] = (),
    extra: tuple[tuple[tarfile.TarInfo, bytes], ...] = (),
    rehash: bool = False,
    order=None,
) -> Path:
    """A copy of the NER package with members replaced / dropped / added, its manifest edited by
    ``edit_manifest(manifest)`` (``rehash``: its sizes and sha256 made to fit the new members), and
    every temporary directory checked to be gone once the command returned."""
    scratch = ctx.tmp / "tmp"
    scratch.mkdir(exist_ok=True)
    ctx.monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    ctx.checks.append(lambda: not list(scratch.iterdir()))
    with tarfile.open(ctx.env.ner_package, "r:gz") as tar:
        members = {info.name: tar.extractfile(info).read() for info in tar.getmembers()}
    manifest = json.loads(members.pop("manifest.json"))
    members.update(replace or {})
    for name in drop:
        members.pop(name)
    if rehash:
        for name, data in members.items():
            manifest["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if edit_manifest:
        edit_manifest(manifest)
    entries = [("manifest.json", json.dumps(manifest).encode()), *members.items()]
    if order:
        entries = order(entries)
    target = ctx.tmp / "model.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return target


@case
def package_not_an_archive(ctx):
    path = ctx.file("model.tar.gz", os.urandom(4096))
    return evaluate(path, ctx.env.conll), [str(path), "not a model package", "not a gzip-compressed tar archive"]


@case
def package_gzip_but_not_tar(ctx):
    path = ctx.file("model.tar.gz", gzip.compress(b"EU rejects German call\n" * 100))
    return evaluate(path, ctx.env.conll), [str(path), "not a tar archive"]


@case
def package_truncated(ctx):
    data = ctx.env.ner_package.read_bytes()
    path = ctx.file("model.tar.gz", data[: len(data) // 2])
    return evaluate(path, ctx.env.conll), [str(path), "truncated or damaged at member"]


@case
def package_truncated_by_its_last_bytes(ctx):
    """The gzip trailer (length and CRC) is checked too: cutting 4 bytes is found."""
    data = ctx.env.ner_package.read_bytes()
    path = ctx.file("model.tar.gz", data[:-4])
    return evaluate(path, ctx.env.conll), [str(path), "truncated or damaged"]


@case
def package_from_a_newer_format(ctx):
    def newer(manifest):
        manifest["format_version"] = 2
        manifest["elmo_tasks_version"] = "9.0.0"

    path = repack(ctx, newer)
    return evaluate(path, ctx.env.conll), [f"{path}: package format 2 is newer", "9.0.0", "upgrade elmo-tasks"]


@case
def package_member_missing(ctx):
    path = repack(ctx, drop=("best.pt",))
    return evaluate(path, ctx.env.conll), [f"{path}#best.pt: missing from the archive"]


@case
def package_member_with_a_wrong_hash(ctx):
    with tarfile.open(ctx.env.ner_package, "r:gz") as tar:
        data = tar.extractfile("vocab.json").read()
    path = repack(ctx, replace={"vocab.json": data.replace(b'"', b"'", 1)})  # same size, other bytes
    return evaluate(path, ctx.env.conll), [f"{path}#vocab.json: member has sha256", "the manifest expects"]


@case
def package_member_of_another_size(ctx):
    path = repack(ctx, replace={"best.pt": b"short"})
    return predict(path, ctx.env.conll, ctx.tmp / "o.txt"), [f"{path}#best.pt: holds 5 bytes, the manifest says"]


@case
def package_embedded_backbone_altered(ctx):
    weights = bytearray(ctx.env.weights.read_bytes())
    weights[-100] ^= 0xFF
    path = repack(ctx, replace={"backbone/weights.hdf5": bytes(weights)})
    return evaluate(path, ctx.env.conll), [f"{path}#backbone/weights.hdf5: the embedded backbone's file has sha256"]


@case
def package_embedded_backbone_not_hdf5_but_listed(ctx):
    def consistent(manifest):
        manifest["backbone"]["weights_sha256"] = manifest["files"]["backbone/weights.hdf5"]["sha256"]

    path = repack(ctx, consistent, replace={"backbone/weights.hdf5": os.urandom(4096)}, rehash=True)
    return evaluate(path, ctx.env.conll), [f"{path}#backbone/weights.hdf5: not an HDF5 file"]


@case
def package_named_backbone_does_not_match(ctx):
    """The package names 'default' with weights this machine's 'default' does not have."""

    def named(manifest):
        for name in ("backbone/options.json", "backbone/weights.hdf5"):
            del manifest["files"][name]
        manifest["backbone"] = {
            "kind": "named",
            "name": "default",
            "options_sha256": "0" * 64,
            "weights_sha256": "ab" * 32,
        }

    path = repack(ctx, named, drop=("backbone/options.json", "backbone/weights.hdf5"))
    return evaluate(path, ctx.env.conll), [
        f"{path}: backbone does not match",
        "'default' whose weights have sha256 abababab",
        "on this machine",
        "--embed-backbone",
    ]


@case
def package_member_is_a_symlink(ctx):
    link = tarfile.TarInfo("results.json")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    path = repack(ctx, drop=("results.json",), extra=((link, b""),))
    return evaluate(path, ctx.env.conll), [f"{path}#results.json: a symbolic link", "regular files only"]


@case
def package_member_escapes_the_folder(ctx):
    evil = tarfile.TarInfo("../../evil.sh")
    evil.size = 4
    path = repack(ctx, extra=((evil, b"boom"),))
    return evaluate(path, ctx.env.conll), [f"{path}#../../evil.sh: unsafe member name"]


@case
def package_member_not_in_the_manifest(ctx):
    extra = tarfile.TarInfo("extra.py")
    extra.size = 4
    path = repack(ctx, extra=((extra, b"boom"),))
    return evaluate(path, ctx.env.conll), [f"{path}#extra.py: not listed in the manifest"]


@case
def package_manifest_not_first(ctx):
    path = repack(ctx, order=lambda entries: entries[1:] + entries[:1])
    return evaluate(path, ctx.env.conll), [f"{path}: its first member is 'config.yaml', not manifest.json"]


@case
def package_manifest_broken(ctx):
    path = repack(ctx, order=lambda entries: [("manifest.json", b'{"format": ')] + entries[1:])
    return evaluate(path, ctx.env.conll), [f"{path}#manifest.json: is damaged"]


@case
def package_best_pt_damaged_but_listed(ctx):
    """A member that matches its manifest but is not a checkpoint: named as ARCHIVE#MEMBER."""
    path = repack(ctx, replace={"best.pt": random.Random(0).randbytes(2048)}, rehash=True)
    return evaluate(path, ctx.env.conll), [f"{path}#best.pt: cannot be read as a checkpoint"]


@case
def package_config_unknown_key_but_listed(ctx):
    with tarfile.open(ctx.env.ner_package, "r:gz") as tar:
        config = tar.extractfile("config.yaml").read()
    path = repack(ctx, replace={"config.yaml": config + b"bogus: 1\n"}, rehash=True)
    return evaluate(path, ctx.env.conll), [f"{path}#config.yaml", "bogus"]


# ---------------------------------------------------------------- pretrain
def pretrain(ctx: Ctx, *args: str, train: Path | None = None, out: Path | None = None) -> list[str]:
    corpus = str(train or ctx.env.corpus)
    return [
        "pretrain",
        "--config",
        str(BILM_TINY),
        "--train",
        corpus,
        "--heldout",
        str(ctx.env.corpus),
        "--out",
        str(out or ctx.tmp / "bilm"),
        "--quiet",
        "--set",
        "max_tokens_seen=200",
        *args,
    ]


@case
def pretrain_config_missing(ctx):
    argv = pretrain(ctx)
    argv[2] = str(ctx.tmp / "nope.yaml")
    return argv, [str(ctx.tmp / "nope.yaml")]


@case
def pretrain_train_missing(ctx):
    return pretrain(ctx, train=ctx.tmp / "nope.txt"), [str(ctx.tmp / "nope.txt")]


@case
def pretrain_train_is_a_directory(ctx):
    return pretrain(ctx, train=ctx.tmp), [str(ctx.tmp), "is a directory"]


@case
def pretrain_train_not_utf8(ctx):
    corpus = ctx.file("c.txt", b"the dog\nthe \xff cat\n")
    return pretrain(ctx, train=corpus), [f"{corpus}:2"]


@case
def pretrain_out_is_a_file(ctx):
    out = ctx.file("bilm", "x")
    return pretrain(ctx, out=out), [str(out), "not a directory"]


@case
def pretrain_out_read_only(ctx):
    locked = ctx.read_only_dir("ro")
    return pretrain(ctx, out=locked / "bilm"), [str(locked), "not writable"]


@case
def pretrain_out_held_no_wait(ctx):
    out = ctx.tmp / "bilm"
    ctx.hold_lock(out / ".lock")
    return pretrain(ctx, "--no-wait", out=out), [str(out / ".lock"), f"PID {os.getpid()}"]


@case
def pretrain_bad_set(ctx):
    return pretrain(ctx, "--set", "model.lstm.dimm=3"), [str(BILM_TINY), "model.lstm.dimm", "did you mean"]


@case
def pretrain_timeout_not_positive(ctx):
    return pretrain(ctx, "--timeout-minutes", "0"), ["--timeout-minutes", "must be > 0"]


# ---------------------------------------------------------------- benchmark layers
def layers(ctx: Ctx, *args: str) -> list[str]:
    return ["benchmark", "layers", "--tasks", "ner", "--seeds", "1", *ctx.env.backbone(), *args]


@case
def benchmark_out_is_a_file(ctx):
    out = ctx.file("grid", "x")
    return layers(ctx, "--out", str(out)), [str(out), "not a directory"]


@case
def benchmark_store_is_a_file(ctx):
    store = ctx.file("store", "x")
    return layers(ctx, "--out", str(ctx.tmp / "grid"), "--store", str(store)), [str(store), "not a directory"]


@case
def benchmark_out_read_only(ctx):
    locked = ctx.read_only_dir("ro")
    return layers(ctx, "--out", str(locked / "grid")), [str(locked), "not writable"]


@case
def benchmark_unknown_task(ctx):
    return layers(ctx, "--out", str(ctx.tmp / "grid"), "--tasks", "nre"), ["nre"]


@case
def benchmark_jobs_zero(ctx):
    return layers(ctx, "--out", str(ctx.tmp / "grid"), "--jobs", "0"), ["--jobs"]


@case
def benchmark_unknown_mix(ctx):
    return layers(ctx, "--out", str(ctx.tmp / "grid"), "--mixes", "layer9"), ["layer9"]


# ---------------------------------------------------------------- counted warnings under --strict
# Read and counted without --strict (tests/test_warnings.py checks the warning lines); refused with it.
@case
def train_strict_illegal_tag_transition(ctx):
    text = ctx.env.conll.read_text() + "in NN I-NP O\nParis NN I-NP B-LOC\n\n"
    folder = data_dir(ctx, text)
    line = len(text.splitlines()) - 1
    return train(ctx, "--out", str(ctx.tmp / "run"), "--strict", data_dir=folder), [
        f"{folder / 'train.txt'}:{line}: illegal tag transition (IOB1): B-LOC after O"
    ]


@case
def train_strict_entity_type_unseen_in_training(ctx):
    folder = data_dir(ctx)
    (folder / "dev.txt").write_text("the NN I-NP O\nCup NN I-NP I-EVENT\n\n")
    return train(ctx, "--out", str(ctx.tmp / "run"), data_dir=folder, **{"data.strict": True}), [
        f"{folder / 'dev.txt'}:2: entity of a type never seen in training: EVENT 'Cup'"
    ]


@case
def evaluate_strict_control_character_in_token(ctx):
    data = ctx.file("test.txt", "EU NN I-NP I-ORG\nre\x1bjects NN I-NP O\n\n")
    return evaluate(ctx.env.ner_run, data, "--strict"), [f"{data}:2: token with a control character", "U+001B"]


@case
def predict_strict_control_character_in_text(ctx):
    source = ctx.file("news.txt", "Peter met Werner.\nThe c\x7fat sat.\n")
    output = ctx.tmp / "out.txt"
    ctx.checks.append(lambda: not output.exists())
    return predict(ctx.env.ner_run, source, output, "--format", "text", "--strict"), [
        f"{source}:2: control character read as a space"
    ]


@case
def embed_strict_control_character_in_token(ctx):
    source = ctx.file("in.txt", "a b\nc\x1bd e\n")
    output = ctx.tmp / "o.hdf5"
    ctx.checks.append(lambda: not output.exists())
    return embed(ctx, "--input", str(source), "--output", str(output), "--strict"), [
        f"{source}:2: token with a control character"
    ]


@case
def pretrain_strict_sentences_too_long(ctx):
    corpus = ctx.file("c.txt", "the dog barked .\n" + "w " * 80 + "\n")
    return pretrain(ctx, "--strict", train=corpus), [
        f"{corpus}:2: sentence skipped as longer than max_sentence_tokens=",
        "80 tokens (1 of 2 in this file, 50.0%",
    ]


def sst2_tsv(ctx: Ctx, train_text: str, *args: str) -> list[str]:
    folder = ctx.tmp / "tsv"
    folder.mkdir()
    (folder / "train.tsv").write_text(train_text)
    (folder / "dev.tsv").write_text("sentence\tlabel\ngreat\t1\nawful\t0\n")
    sets = {
        "data.dir": str(folder),
        "data.format": "tsv",
        "data.train": "train.tsv",
        "data.dev": "dev.tsv",
        "data.test": None,
        "model.elmo.enabled": False,
        "model.words.dim": 8,
    }
    argv = ["train", str(REPO / "configs" / "sst2.yaml"), "--quiet", "--out", str(ctx.tmp / "run"), *args]
    return argv + [a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v)}")]


@case
def train_strict_tsv_header_guessed(ctx):
    text = "a gripping film\tsuperb\nawful\t0\nfun\t1\ndull\t0\n"
    return sst2_tsv(ctx, text, "--strict"), [
        f"{ctx.tmp / 'tsv' / 'train.tsv'}:1: first line taken for a header by a guess",
        "data.header: false",
    ]


@case
def train_tsv_glue_test_file_without_labels(ctx):
    return sst2_tsv(ctx, "index\tsentence\n0\tgreat\n1\tawful\n"), [
        f"{ctx.tmp / 'tsv' / 'train.tsv'}:1: no label column",
        "GLUE's test.tsv",
    ]


@case
def train_tsv_labels_that_look_like_text(ctx):
    rows = "".join(f"{i % 2}\tthe film number {i} is fine\n" for i in range(2000))
    argv = sst2_tsv(ctx, "label\tsentence\n" + rows)
    argv += ["--set", "data.text_column=0", "--set", "data.label_column=1"]
    return argv, ["2,000 distinct labels in column 1 ('sentence')", "column 1 ('sentence') looks like the text"]


@case
def train_wsd_strict_gold_key_not_a_wordnet_sense(ctx):
    folder = wsd_data(ctx)
    key = folder / "semcor" / "semcor.gold.key.txt"
    key.write_text(key.read_text().replace("cash%1:21:00::", "cash%1:99:99::"))
    argv = wsd_train(ctx, folder)
    return argv + ["--strict"], [f"{key}:3: gold key that is not a WordNet 3.0 sense key: 'cash%1:99:99::'"]


# ---------------------------------------------------------------- the contract
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_clear_line(name, env, tmp_path, monkeypatch, capsys):
    ctx = Ctx(env, tmp_path, monkeypatch)
    try:
        argv, expected = CASES[name](ctx)
        capsys.readouterr()
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, err
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        assert lines[0].startswith(f"elmo-tasks {argv[0]}: error: "), err
        # One line; a config lists every problem it has, one per line (see data/config.py).
        assert len(lines) == 1 or ("invalid config" in lines[0] and len(lines) <= 15), err
        for fragment in expected:
            assert fragment in err, f"{fragment!r} not in {err!r}"
        for check in ctx.checks:
            assert check(), "something was left behind"
        assert not list(tmp_path.rglob("*.part")), "a .part file was left behind"
    finally:
        for release in reversed(ctx.cleanup):
            release()


# ---------------------------------------------------------------- locks: one process per directory
def test_a_lock_file_names_its_holder_and_is_emptied_on_release(tmp_path, monkeypatch):
    from elmo_core.io import DirectoryBusyError, FileLock, directory_lock

    lock = directory_lock(tmp_path / "run")
    with lock:
        assert (tmp_path / "run" / ".lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(DirectoryBusyError, match=rf"\.lock: held by PID {os.getpid()} .*not waiting"):
            FileLock(tmp_path / "run" / ".lock", wait=False).acquire()
        monkeypatch.setenv("ELMO_TASKS_NO_WAIT", "1")
        with pytest.raises(DirectoryBusyError):
            directory_lock(tmp_path / "run").acquire()  # wait=None: the environment decides
    assert (tmp_path / "run" / ".lock").read_text() == ""
    with FileLock(tmp_path / "run" / ".lock", wait=False):  # free again
        pass


def test_a_second_trainer_waits_for_the_first_then_resumes(env, tmp_path, capsys):
    """The holder here is this process (another open of the lock file); the trainer waits, says for
    whom, and trains once the holder lets go."""
    from elmo_core.io import FileLock

    out = env.copy_run(tmp_path / "run")
    lock = FileLock(out / ".lock").acquire()
    threading.Timer(0.5, lock.release).start()
    started = time.perf_counter()
    argv = ["train", str(NER), "--quiet", "--out", str(out), *env.ner_set(**{"train.epochs": 2})]
    assert main(argv) == 0
    assert time.perf_counter() - started >= 0.5
    printed = capsys.readouterr().out
    assert f"waiting for PID {os.getpid()} which holds {out / '.lock'}" in printed
    assert "resuming after epoch 1" in printed  # what the run we waited for had done is kept


def test_two_builds_of_a_fresh_store_side_by_side_embed_each_sentence_once(env, tmp_path, monkeypatch):
    """Two seeds starting on a fresh store: the second waits for the first's shard, then finds
    every sentence stored (it used to fail at once)."""
    import elmo_core.bilm as bilm_module
    from elmo_core import load_bilm
    from elmo_core.store import FeatureStore, build_store

    sentences = [line.split() for line in ("a b c", "d e", "f g h i", "j")] * 3
    bilm = load_bilm(options=env.options, weights=env.weights)
    forward_many = bilm_module.ElmoBiLm.forward_many  # forward() goes through it too

    def slow_forward_many(self, char_ids):
        time.sleep(0.05)
        return forward_many(self, char_ids)

    monkeypatch.setattr(bilm_module.ElmoBiLm, "forward_many", slow_forward_many)
    store, reports, said = tmp_path / "store", {}, []

    def build(name):
        reports[name] = build_store(store, bilm, "tiny", sentences, max_batch=1, progress=False, log=said.append)

    first = threading.Thread(target=build, args=("first",))
    first.start()
    while not (store / "locks" / "r0.lock").is_file() or not (store / "locks" / "r0.lock").read_text():
        time.sleep(0.01)
    build("second")
    first.join()
    assert reports["first"].embedded == 4 and reports["second"].embedded == 0
    assert reports["second"].already_stored == 4
    assert said == [f"waiting for PID {os.getpid()} which holds {store / 'locks' / 'r0.lock'}"]
    assert len(FeatureStore(store, "tiny")) == 4


def test_a_killed_holder_releases_its_lock(tmp_path):
    """flock dies with its process: kill -9 leaves no stale lock, and the PID named is the holder's."""
    from elmo_core.io import DirectoryBusyError, FileLock

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from elmo_core.io import directory_lock\n"
            "directory_lock(sys.argv[1]).acquire()\n"
            "print('held', flush=True)\n"
            "time.sleep(120)\n",
            str(tmp_path / "run"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DirectoryBusyError, match=f"held by PID {holder.pid} "):
            FileLock(tmp_path / "run" / ".lock", wait=False).acquire()
    finally:
        holder.kill()
        holder.wait()
    with FileLock(tmp_path / "run" / ".lock", wait=False):
        pass


def test_no_wait_is_a_flag_of_the_verbs_that_lock():
    from tasks.cli import build_parser

    parser = build_parser()
    for verb in (["train", "c.yaml"], ["pretrain", "--config", "c", "--train", "t", "--heldout", "h", "--out", "o"]):
        assert parser.parse_args([*verb, "--no-wait"]).no_wait
    assert parser.parse_args(["embed", "--input", "i", "--store", "s", "--no-wait"]).no_wait


# ---------------------------------------------------------------- a full disk, in the atomic writers
def test_a_full_disk_names_the_target_and_leaves_the_old_file(tmp_path, monkeypatch):
    import shutil as shutil_module

    from elmo_core.io import atomic_torch_save, atomic_write

    target = tmp_path / "best.pt"
    target.write_bytes(b"old")

    def no_space(handle):
        raise OSError(errno.ENOSPC, "No space left on device")  # what os.write says: no file name

    with pytest.raises(OSError) as caught:
        atomic_write(target, no_space)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    # torch.save hides ENOSPC behind a RuntimeError; a nearly full filesystem tells it apart
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("unexpected pos 704")))
    with pytest.raises(RuntimeError, match="unexpected pos"):  # plenty of space: a bug, raised as it is
        atomic_torch_save({}, target)
    usage = shutil_module.disk_usage(tmp_path)
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: usage._replace(free=4096))
    with pytest.raises(OSError, match="No space left on device") as caught:
        atomic_torch_save({}, target)
    assert caught.value.filename == str(target)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]
