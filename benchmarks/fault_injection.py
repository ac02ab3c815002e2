"""Fault injection: `kill -9` each resumable verb at random moments, run it again, and check that the
resumed result equals an uninterrupted run bit for bit.

For each of `elmo-tasks embed --store`, `elmo-tasks train` and `elmo-tasks pretrain` (tiny inputs, a
tiny random backbone, one thread): one uninterrupted run is the reference and gives the run's
duration; then, for each of N points, a fresh output directory, the command started, SIGKILLed at a
seeded random time (uniform from 80 % of the interpreter's start-up time to 105 % of the reference
duration), started again and left to finish, and the result compared with the reference:

* embed --store: store.json, the set of keys with each entry's token count, and every stored array
  byte for byte (which chunk file / row an entry sits in depends on where commits fell, so it is
  not compared; readers never see it);
* train: best.pt and last.pt (model, optimizer, trainer state, both RNG states), results.json,
  metrics.json and the dev/test predictions, with wall-clock timings left out;
* pretrain: every dataset of the exported weights.hdf5, options.json, vocab.txt, the final
  checkpoint.pt (model, optimizer, corpus position, RNG, config) and result.json, timings left out.

A kill lands *before* the work (nothing durable on disk yet: no committed store entry, no last.pt,
no checkpoint), *during* it (partial progress on disk), or *after* it (the run had finished or had
written its final result). The store is built with `--commit-seconds 0.25` so that kills find
stores committed part-way (the default, 60 s, would commit nothing in a run this short).

    OMP_NUM_THREADS=1 python benchmarks/fault_injection.py [--points 20] [--quick] [--verbs embed,train,pretrain]
        [--seed 0] [--jobs 1] [--no-write]

Exit status 1 when any resumed result differs from its reference.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from common import DOCS, REPO, command_line, git_revision, machine, write_section  # benchmarks/common.py

WORDS = "the a dog cat bark barks tree oak rough sharp let out of was ancient grey sat on mat".split()
TAGS = ["O", "I-PER", "I-LOC", "I-ORG", "I-MISC"]
TIMING_KEYS = {
    "train_seconds",
    "epoch_seconds",
    "train_seconds_total",
    "seconds_per_epoch",
    "features_seconds",
    "seconds",
}


# ---------------------------------------------------------------- comparing results bit for bit


def _same(a, b, where: str, out: list[str]) -> None:
    """Append to ``out`` every place where ``a`` and ``b`` differ (tensors and arrays byte for byte)."""
    import numpy as np
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            out.append(f"{where}: tensor vs {type(b).__name__}")
        elif a.dtype != b.dtype or a.shape != b.shape:
            out.append(f"{where}: {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}")
        elif a.detach().cpu().numpy().tobytes() != b.detach().cpu().numpy().tobytes():
            out.append(f"{where}: values differ")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            out.append(f"{where}: array vs {type(b).__name__}")
        elif a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
            out.append(f"{where}: values differ")
    elif isinstance(a, dict) and isinstance(b, dict):
        keys_a, keys_b = {k for k in a if k not in TIMING_KEYS}, {k for k in b if k not in TIMING_KEYS}
        if keys_a != keys_b:
            out.append(f"{where}: keys differ ({sorted(map(str, keys_a ^ keys_b))[:5]})")
        for key in sorted(keys_a & keys_b, key=str):
            _same(a[key], b[key], f"{where}.{key}", out)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            out.append(f"{where}: length {len(a)} vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]", out)
    elif a != b and not (a != a and b != b):  # NaN == NaN here
        out.append(f"{where}: {str(a)[:60]!r} vs {str(b)[:60]!r}")


def _json_fields(value):
    """JSON strings inside checkpoints (trainer state, RNG state) decoded, so timings can be left out."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _load_pt(path: Path) -> dict:
    import torch

    saved = torch.load(path, map_location="cpu", weights_only=True)
    return {k: _json_fields(v) for k, v in saved.items()}


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def _text(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def snapshot_store(store_dir: Path) -> dict:
    import numpy as np

    from elmo_core.store import FeatureStore, read_index

    store = FeatureStore(store_dir)
    return {
        "store.json": _read_json(store_dir / "store.json"),
        "index (key -> tokens)": {k: e.length for k, e in sorted(read_index(store_dir).items())},
        "arrays": {k: np.ascontiguousarray(store.get_by_key(k)) for k in sorted(store.keys())},
    }


def snapshot_train(run: Path) -> dict:
    return {
        "best.pt": _load_pt(run / "best.pt"),
        "last.pt": _load_pt(run / "last.pt"),
        "results.json": _read_json(run / "results.json"),
        "metrics.json": _read_json(run / "metrics.json"),
        "dev.predictions.txt": _text(run / "dev.predictions.txt"),
        "test.predictions.txt": _text(run / "test.predictions.txt"),
    }


def snapshot_pretrain(run: Path) -> dict:
    import h5py

    datasets = {}
    with h5py.File(run / "weights.hdf5", "r") as handle:
        handle.visititems(
            lambda name, obj: datasets.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
        )
    checkpoint = _load_pt(run / "checkpoint.pt")
    return {
        "weights.hdf5": datasets,
        "options.json": _read_json(run / "options.json"),
        "vocab.txt": _text(run / "vocab.txt"),
        "checkpoint.pt": checkpoint,
        "result.json": _read_json(run / "result.json"),
    }


# ---------------------------------------------------------------- the three verbs


@dataclass
class Verb:
    name: str
    shown: str  # the command as a user types it
    argv: Callable[[Path], list[str]]  # the command for one output directory
    snapshot: Callable[[Path], dict]
    progress: Callable[[Path], str]  # "none", "partial" or "complete": what is durable on disk now


def make_inputs(root: Path) -> dict:
    """A tiny random backbone, a text file, a small CoNLL train/dev/test and a pretraining corpus."""
    from elmo_core.random_model import write_random_model

    rng = random.Random(0)
    options, weights = write_random_model(root / "model")
    vocabulary = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(400)
    ]
    text = root / "sentences.txt"
    text.write_text(
        "".join(" ".join(rng.choice(vocabulary) for _ in range(rng.randint(3, 20))) + "\n" for _ in range(5000))
    )
    conll = root / "conll"
    conll.mkdir()
    for name, n in (("train.txt", 500), ("dev.txt", 80), ("test.txt", 80)):
        lines = ["-DOCSTART- -X- O O", ""]
        for _ in range(n):
            words = [rng.choice(vocabulary[:150]) for _ in range(rng.randint(2, 12))]
            lines += [f"{w} NN I-NP {TAGS[hash_tag(w)]}" for w in words] + [""]
        (conll / name).write_text("\n".join(lines) + "\n")
    corpus, heldout = root / "corpus.txt", root / "heldout.txt"
    for path, n in ((corpus, 1500), (heldout, 30)):
        path.write_text(
            "".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + "\n" for _ in range(n))
        )
    return {"options": options, "weights": weights, "text": text, "conll": conll, "corpus": corpus, "heldout": heldout}


def hash_tag(word: str) -> int:
    """A tag that depends on the word only (so there is something to learn), without Python's salted hash."""
    return sum(map(ord, word)) % len(TAGS)


def verbs(inputs: dict) -> dict[str, Verb]:
    cli = [sys.executable, "-m", "tasks.cli"]
    backbone = ["--options", str(inputs["options"]), "--weights", str(inputs["weights"])]

    def embed_argv(out: Path) -> list[str]:
        return (
            cli
            + ["embed", *backbone, "--input", str(inputs["text"]), "--store", str(out / "store")]
            + [
                "--batch-size",
                "16",
                "--commit-seconds",
                "0.25",
                "--quiet",
            ]
        )

    def embed_progress(out: Path) -> str:
        from elmo_core.store import read_index

        if not (out / "store" / "store.json").is_file():
            return "none"
        n = len(read_index(out / "store"))
        return "none" if n == 0 else "complete" if (out / "store" / "index.tsv").is_file() else "partial"

    train_sets = {
        "data.dir": str(inputs["conll"]),
        "data.train": "train.txt",
        "data.dev": "dev.txt",
        "data.test": "test.txt",
        "backbone.name": None,
        "backbone.options": str(inputs["options"]),
        "backbone.weights": str(inputs["weights"]),
        "train.epochs": 8,
        "train.patience": 10,
        "train.threads": 1,
        "model.hidden": 16,
        "model.words.min_count": 1,
        "model.words.pretrained": None,
    }

    def train_argv(out: Path) -> list[str]:
        sets = {**train_sets, "backbone.store": str(out / "store")}
        args = [a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v)}")]
        return cli + [
            "train",
            str(REPO / "configs" / "ner_conll2003.yaml"),
            *args,
            "--out",
            str(out / "run"),
            "--quiet",
        ]

    def train_progress(out: Path) -> str:
        run = out / "run"
        return "complete" if (run / "results.json").is_file() else "partial" if (run / "last.pt").is_file() else "none"

    def pretrain_argv(out: Path) -> list[str]:
        sets = {"max_tokens_seen": 60000, "checkpoint_every": 3, "eval_every": 10}
        return cli + [
            "pretrain",
            "--config",
            str(REPO / "configs" / "bilm_tiny.yaml"),
            "--train",
            str(inputs["corpus"]),
            "--heldout",
            str(inputs["heldout"]),
            "--out",
            str(out / "run"),
            "--quiet",
            *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")],
        ]

    def pretrain_progress(out: Path) -> str:
        run = out / "run"
        if (run / "result.json").is_file() and (run / "weights.hdf5").is_file():
            return "complete"
        return "partial" if (run / "checkpoint.pt").is_file() else "none"

    return {
        "embed": Verb(
            "embed",
            "elmo-tasks embed --options O --weights W --input sentences.txt --store DIR --batch-size 16 --commit-seconds 0.25",
            embed_argv,
            lambda out: snapshot_store(out / "store"),
            embed_progress,
        ),
        "train": Verb(
            "train",
            "elmo-tasks train configs/ner_conll2003.yaml --set backbone.store=DIR/store … --out DIR/run",
            train_argv,
            lambda out: snapshot_train(out / "run"),
            train_progress,
        ),
        "pretrain": Verb(
            "pretrain",
            "elmo-tasks pretrain --config configs/bilm_tiny.yaml --train corpus.txt --heldout heldout.txt --out DIR",
            pretrain_argv,
            lambda out: snapshot_pretrain(out / "run"),
            pretrain_progress,
        ),
    }


# ---------------------------------------------------------------- running and killing


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "ELMO_TASKS_NO_WAIT": "1"}


def run_to_end(argv: list[str], timeout: float = 600) -> None:
    done = subprocess.run(argv, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[2:5])}… exited {done.returncode}: {done.stderr[-2000:]}")


def run_and_kill(argv: list[str], after: float) -> bool:
    """Start ``argv``, SIGKILL its process group ``after`` seconds later; False if it finished first."""
    child = subprocess.Popen(
        argv, cwd=REPO, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        child.wait(timeout=after)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        return True
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[2:5])}… exited {child.returncode}: {child.stderr.read()[-2000:]}")
    return False


@dataclass
class VerbReport:
    name: str
    shown: str
    reference_seconds: float = 0.0
    startup_seconds: float = 0.0
    points: int = 0
    before: int = 0
    during: int = 0
    after: int = 0
    equal: int = 0
    mismatches: list[str] = field(default_factory=list)
    seconds: float = 0.0


def one_point(verb: Verb, reference: dict, root: Path, index: int, kill_at: float) -> tuple[str, list[str]]:
    out = root / f"{verb.name}-{index:03d}"
    killed = run_and_kill(verb.argv(out), kill_at)
    state = verb.progress(out)
    landed = "after" if not killed or state == "complete" else "during" if state == "partial" else "before"
    run_to_end(verb.argv(out))
    differences: list[str] = []
    _same(reference, verb.snapshot(out), verb.name, differences)
    shutil.rmtree(out, ignore_errors=True)
    return landed, differences


def inject(verb: Verb, points: int, seed: int, root: Path, jobs: int, log) -> VerbReport:
    report = VerbReport(verb.name, verb.shown, points=points)
    started = time.perf_counter()
    reference_dir = root / f"{verb.name}-reference"
    run_to_end(verb.argv(reference_dir))
    report.reference_seconds = time.perf_counter() - started
    reference = verb.snapshot(reference_dir)
    # Python and torch take seconds to start, a large part of a run this small: the kills are spread
    # from 80 % of that start-up time to a little past the run's end.
    begin = time.perf_counter()
    run_to_end(verb.argv(root / "startup")[:4] + ["--help"])
    report.startup_seconds = time.perf_counter() - begin
    rng = random.Random(f"{seed}-{verb.name}")
    low, high = 0.8 * report.startup_seconds, 1.05 * report.reference_seconds
    kill_at = [rng.uniform(low, max(high, low + 0.1)) for _ in range(points)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda i: one_point(verb, reference, root, i, kill_at[i]), range(points)))
    for i, (landed, differences) in enumerate(results):
        setattr(report, landed, getattr(report, landed) + 1)
        if differences:
            report.mismatches.append(f"point {i} (kill at {kill_at[i]:.2f} s, {landed}): {'; '.join(differences[:5])}")
        else:
            report.equal += 1
        log(
            f"  {verb.name} point {i}: kill at {kill_at[i]:.2f} s ({landed}): {'equal' if not differences else 'DIFFERS'}"
        )
    report.seconds = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=20, help="kill points per verb (default 20)")
    parser.add_argument("--quick", action="store_true", help="3 points per verb, nothing written to docs/")
    parser.add_argument("--verbs", default="embed,train,pretrain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="points run side by side (default 1)")
    parser.add_argument("--no-write", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--workdir", type=Path, help="where the runs go (default: a temporary directory)")
    args = parser.parse_args(argv)
    points = 3 if args.quick else args.points
    names = [v.strip() for v in args.verbs.split(",") if v.strip()]
    root = Path(tempfile.mkdtemp(prefix="fault-injection-", dir=args.workdir))
    log = print
    try:
        inputs = make_inputs(root / "inputs")
        table = verbs(inputs)
        unknown = [n for n in names if n not in table]
        if unknown:
            parser.error(f"unknown verb(s) {unknown}; choose from {', '.join(table)}")
        reports = []
        for name in names:
            log(f"{name}: reference run, then {points} kill points")
            reports.append(inject(table[name], points, args.seed, root, args.jobs, log))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    body = render(reports, points, args)
    print(body)
    if not (args.quick or args.no_write):
        write_section(DOCS / "benchmarks.md", "fault_injection", body)
    return 1 if any(r.mismatches for r in reports) else 0


def render(reports: list[VerbReport], points: int, args) -> str:
    lines = [
        f"### Fault injection: `kill -9` at random points, then resume ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"`OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')} {command_line()}` at {git_revision()}",
        "",
        f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end",
        "",
        "Each point: a fresh directory, the command killed with SIGKILL after a seeded random time, uniform "
        "from 0.8 x the start-up time (`elmo-tasks VERB --help`) to 1.05 x the reference run's duration, run again to completion, and "
        "compared with the uninterrupted reference bit for bit (embed: store.json, keys with token counts, "
        "every stored array; train: best.pt / last.pt incl. optimizer and RNG states, results.json, "
        "metrics.json, predictions; pretrain: every weights.hdf5 dataset, options.json, vocab.txt, "
        "checkpoint.pt, result.json; wall-clock timings left out). *before*: nothing durable was on disk "
        "at the kill; *during*: partial progress; *after*: the run had finished. Tiny random backbone, "
        f"{args.jobs} point(s) at a time.",
        "",
        "| verb | reference run (start-up) | points | before / during / after | resumed equal | mismatches |",
        "|---|---|---|---|---|---|",
    ]
    for r in reports:
        lines.append(
            f"| `{r.shown}` | {r.reference_seconds:.1f} s ({r.startup_seconds:.1f} s) | {r.points} | {r.before} / {r.during} / {r.after} | "
            f"{r.equal} | {len(r.mismatches)} |"
        )
    for r in reports:
        for m in r.mismatches:
            lines.append(f"\n- {r.name} {m}")
    total = sum(r.seconds for r in reports)
    lines += ["", f"{sum(r.points for r in reports)} kill points in {total / 60:.1f} min."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
