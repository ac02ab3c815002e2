"""`elmo-tasks benchmark layers`: every task x every layer weighting x seeds, on one backbone.

The ELMo paper's analysis as one command: does mixing all layers beat the top layer, and which
layer holds syntax (POS, chunking) and which semantics (WSD)? Features are computed once per
dataset and shared by all cells (only the heads train), model selection uses dev, test is reported.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import torch

from data.config import known_key
from elmo_core.io import atomic_write_json, atomic_write_text, check_output_dir

from ..config import TaskConfig
from ..errors import UsageError
from ..features import attach_features, backbone_files, backbone_identity, load_backbone
from ..metrics.classification import save_png
from ..registry import TASKS, build_task, load_task_config


def grid_mixes(num_layers: int) -> dict[str, dict]:
    """The grid's layer weightings for a biLM with ``num_layers`` layers (char CNN + LSTM layers):
    each layer alone, the top layer, the equal average, the learned ScalarMix with a strong and a
    weak L2 penalty, and the concatenation."""
    mixes = {f"layer{k}": {"mode": "single", "layer": k} for k in range(num_layers)}
    return {
        **mixes,
        "top": {"mode": "top"},
        "average": {"mode": "average"},
        "learned λ=1": {"mode": "learned", "l2": 1.0},
        "learned λ=0.001": {"mode": "learned", "l2": 0.001},
        "concat": {"mode": "concat"},
    }


MIXES = grid_mixes(3)  # the mixes on an ELMo with 2 LSTM layers (every published ELMo)


def default_config_path(task: str) -> Path:
    """The task's packaged default config (``configs/`` ships inside the installed package)."""
    from importlib import resources

    return Path(str(resources.files("configs") / TASKS[task].default_config))


def backbone_layers(backbone: dict) -> int:
    """Layers (char CNN + LSTM layers) of the biLM a grid's backbone section names, from its options JSON."""
    from ..config import BackboneConfig

    options = json.loads(Path(backbone_files(BackboneConfig(**backbone))[0]).read_text(encoding="utf-8"))
    return int(options["lstm"]["n_layers"]) + 1


def cell_config(
    task: str, mix: dict, seed: int, backbone: dict, reduced: bool, extra: dict, store: Path | None = None
) -> TaskConfig:
    """The task's config for one cell. ``store``: the on-disk feature store every cell reads (and
    the first one fills); ``None`` keeps the features in memory only. Pretrained word vectors are
    off in the grid unless ``extra`` turns them on (``model.words.pretrained=glove.6B.50d``): the
    grid compares ways of using the ELMo layers, and its documented tables were made without them."""
    backbone = {**backbone, "store": str(store) if store is not None else None}
    overrides = {"train.seed": seed, "model.elmo.enabled": True, "model.elmo.mix": dict(mix), "backbone": backbone}
    overrides.update(overrides_for(task, GRID_WORDS))
    if reduced:
        overrides.update(TASKS[task].reduced)
    overrides.update(overrides_for(task, extra))
    return load_task_config(default_config_path(task), overrides)


GRID_WORDS = {"model.words.pretrained": None, "model.words.fold_digits": True}


def overrides_for(task: str, extra: dict) -> dict:
    """The grid-wide ``--set`` overrides that apply to ``task``: those naming a key its config has
    (``model.hidden`` reaches NER and sentiment, not the linear probes)."""
    return {k: v for k, v in extra.items() if known_key(TASKS[task].Config, k)}


def check_grid(
    tasks: list[str], mixes: list[str], backbone: dict, seeds: int, jobs: int, extra: dict | None = None
) -> dict[str, dict]:
    """Every argument checked before any cell starts; returns the mixes this backbone has."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise UsageError(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
    unused = [k for k in extra or {} if not any(known_key(TASKS[t].Config, k) for t in tasks)]
    if unused:
        raise UsageError(f"--set {', '.join(unused)}: no task of this grid ({', '.join(tasks)}) has such a key")
    available = grid_mixes(backbone_layers(backbone))
    bad = [m for m in mixes if m not in available]
    if bad:
        raise UsageError(f"unknown mix(es) {bad} for this backbone; choose from {', '.join(available)}")
    if seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {seeds}")
    if jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {jobs}")
    return available


_inherited: dict = {}  # the feature and backbone caches forked workers inherit (see run_grid)


def run_grid(
    tasks: list[str],
    seeds: int,
    backbone: dict,
    out: Path,
    reduced: bool = False,
    mixes: list[str] | None = None,
    extra: dict | None = None,
    log=print,
    jobs: int = 1,
    store: Path | None | str = "default",
) -> list[dict]:
    """Train and score every (task, mix, seed) cell into ``out/runs``; cells already finished
    there (by any earlier invocation) are kept, a cell cut off mid-training resumes from its last
    epoch. ``jobs > 1`` trains that many cells at once in forked worker processes with one thread
    each; the features are computed first, once, in this process, and the workers inherit them.
    ``store``: the feature store the cells read, ``out/features`` by default, so the backbone runs
    once per sentence over all invocations; ``None``: in memory, once per invocation.
    Returns the rows of every finished cell under ``out``."""
    from ..trainer import Trainer

    available = check_grid(tasks, mixes or [], backbone, seeds, jobs, extra)
    mixes = mixes or list(available)
    extra = dict(extra or {})
    store = out / "features" if store == "default" else store
    check_output_dir(out, "--out")
    if store is not None:
        check_output_dir(store, "--store")
    log = _flushing(log)
    if jobs > 1:
        extra["train.threads"] = 1  # one core per cell: OpenMP pools beside each other spin-wait
    cells = [(t, m, s) for t in tasks for m in mixes for s in range(1, seeds + 1)]
    configs = {
        c: cell_config(c[0], available[c[1]], c[2], backbone, reduced, extra, store) for c in cells
    }  # all checked now
    todo = [c for c in cells if not (cell_dir(out, *c) / "results.json").is_file()]
    check_finished_cells(out, [cell_dir(out, *c) for c in cells if c not in todo], backbone)
    same = equal_mixes(mixes, backbone)
    copies = [c for c in todo if c[1] in same]
    todo = [c for c in todo if c[1] not in same]
    for mix, source in same.items():
        log(f"'{mix}' is '{source}' on this backbone: its cells are copied from '{source}', not trained again")
    progress = GridProgress(todo, len(cells) - len(copies), log, jobs)
    clock = InvocationClock(out, tasks, len(cells), reduced, jobs)
    feature_cache: dict = {}
    backbone_cache: dict = {}
    if jobs <= 1:
        for task, mix, seed in todo:
            progress.starting(task, mix, seed)
            started = time.perf_counter()
            result = Trainer(
                configs[task, mix, seed],
                cell_dir(out, task, mix, seed),
                progress=False,
                log=lambda *_: clock.tick(progress.done),  # the trainer logs once per epoch
                feature_cache=feature_cache,
                backbone_cache=backbone_cache,
            ).run()
            progress.finished(task, mix, seed, result, time.perf_counter() - started)
            clock.tick(progress.done)
    elif todo:
        for task in dict.fromkeys(t for t, _, _ in todo):
            first_mix = next(m for t, m, _ in todo if t == task)
            seconds = warm_feature_cache(configs[task, first_mix, 1], feature_cache, backbone_cache)
            source = f"from the store {store}" if store is not None else "in memory"
            log(f"features for {task} {source}, once, shared by its cells: {sum(seconds.values()):.1f} s")
        todo.sort(key=lambda c: -TASKS[c[0]].cost)  # stable: task, mix, seed order within a cost
        _inherited.update(features=feature_cache, backbones=backbone_cache)
        log(f"{len(todo)} cells on {jobs} worker processes (1 thread each)")
        with ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("fork"), initializer=torch.set_num_threads, initargs=(1,)
        ) as pool:
            pending = {
                pool.submit(_run_cell_in_worker, configs[t, m, s], cell_dir(out, t, m, s), f"{t} | {m} | seed {s}"): (
                    t,
                    m,
                    s,
                )
                for t, m, s in todo
            }
            running = set(pending)
            while running:
                # wake at least every minute, so the clock of a killed invocation is at most a minute short
                finished, running = wait(running, timeout=60, return_when=FIRST_COMPLETED)
                for future in finished:
                    task, mix, seed = pending[future]
                    progress.finished(task, mix, seed, *future.result())
                clock.tick(progress.done)
        _inherited.clear()
    for task, mix, seed in copies:
        copy_equal_cell(out, task, mix, same[mix], seed)
    clock.tick(progress.done + len(copies), finished=True)
    all_rows = collect_rows(out)
    write_outputs(all_rows, out, reduced)
    return all_rows


def check_finished_cells(out: Path, finished: list[Path], backbone: dict) -> None:
    """Finished cells are kept, not trained again, so each must have been trained on the files the
    grid's backbone names now (the sha256 its ``config.yaml`` records); cells from before that
    record are kept unchecked, with one warning for all of them."""
    import warnings

    from ..config import BackboneConfig
    from ..errors import UncheckedBackboneWarning
    from ..features import check_run_backbone
    from ..trainer import saved_config

    now = BackboneConfig(**backbone)
    remedy = "Run the grid with --options/--weights naming the files its cells were trained with, or use another --out"
    unchecked = []
    for run_dir in finished:
        saved = saved_config(run_dir)  # None: a cell copied from an equal mix (checked as that mix)
        recorded = BackboneConfig(**saved["backbone"]) if saved is not None else None
        if recorded is not None and recorded.weights_sha256 is None:
            unchecked.append(run_dir)
        elif recorded is not None:
            check_run_backbone(run_dir, recorded, now, remedy)
    if unchecked:
        warnings.warn(
            f"{len(unchecked)} finished cell(s) under {out / 'runs'} (e.g. {unchecked[0]}) predate backbone "
            f"hashes, so their backbone cannot be checked; they are kept as they are. Cells trained on the "
            "previous 'default' (before the stronger default backbone) need the old files: run the grid with "
            "--options/--weights naming them, or use another --out",
            UncheckedBackboneWarning,
            stacklevel=3,
        )


def warm_feature_cache(
    config: TaskConfig, feature_cache: dict, backbone_cache: dict, progress: bool = False
) -> dict[str, float]:
    """Embed (or read from the store) every split of the task ``config`` describes into
    ``feature_cache``, so that later ``Trainer`` runs given the same dicts, in this process or in
    processes forked from it, train without running the backbone. Returns seconds per split."""
    task = build_task(config)
    for _ in task.load():
        pass
    identity = backbone_identity(config.backbone)
    if identity not in backbone_cache:
        backbone_cache[identity] = load_backbone(config.backbone)
    return attach_features(task, backbone_cache[identity], progress, feature_cache)


def equal_mixes(mixes: list[str], backbone: dict) -> dict[str, str]:
    """``{mix: the grid's mix it equals on this backbone}``: "top" is the last "layerK".
    Such cells would train the same model on the same features, so they are copied instead."""
    if "top" not in mixes:
        return {}
    top = f"layer{backbone_layers(backbone) - 1}"
    return {"top": top} if top in mixes else {}


def copy_equal_cell(out: Path, task: str, mix: str, source_mix: str, seed: int) -> None:
    source = cell_dir(out, task, source_mix, seed) / "results.json"
    target = cell_dir(out, task, mix, seed)
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_json(target / "results.json", dict(json.loads(source.read_text()), same_as=source_mix))


def _flushing(log):
    """``log``, then flush stdout: lines reach a log file whole and in order beside the workers'
    lines, and forked workers never inherit (and print again) buffered text."""

    def log_and_flush(line: str) -> None:
        log(line)
        sys.stdout.flush()

    return log_and_flush


def _run_cell_in_worker(config: TaskConfig, run_dir: Path, label: str) -> tuple[dict, float]:
    """(results, wall seconds) of one cell, in a worker process."""
    from ..trainer import Trainer

    sys.stdout.write(f"  started {label} (worker {os.getpid()})\n")  # one write: workers share the stream
    sys.stdout.flush()
    started = time.perf_counter()
    result = Trainer(
        config,
        run_dir,
        progress=False,
        log=lambda *_: None,
        feature_cache=_inherited.get("features"),
        backbone_cache=_inherited.get("backbones"),
    ).run()
    return result, time.perf_counter() - started


def cell_dir(out: Path, task: str, mix: str, seed: int) -> Path:
    return out / "runs" / task / mix_dirname(mix) / f"seed{seed}"


class GridProgress:
    """One line per cell: which cell starts (serial) or finished, its scores, and the time left.

    The time left is estimated per task (cells of one task cost alike, cells of different tasks
    do not): the mean measured time of the task's finished cells, or for a task with none yet,
    the task's ``cost`` scaled by what the finished cells took; divided by the number of workers."""

    def __init__(self, todo: list[tuple[str, str, int]], total: int, log, jobs: int = 1):
        self.remaining = [task for task, _, _ in todo]
        self.total, self.done, self.log, self.jobs = total, total - len(todo), log, jobs
        self.seconds: dict[str, list[float]] = {}
        if self.done:
            log(f"{self.done} of {total} cells already finished in this output directory: kept")

    def seconds_left(self) -> float | None:
        if not self.seconds:
            return None
        per_cost = statistics.mean(t / TASKS[task].cost for task, times in self.seconds.items() for t in times)
        estimate = {task: statistics.mean(times) for task, times in self.seconds.items()}
        return sum(estimate.get(task, TASKS[task].cost * per_cost) for task in self.remaining) / self.jobs

    def _eta(self) -> str:
        left = self.seconds_left()
        return "" if left is None else f"; about {left / 60:.0f} min left"

    def starting(self, task: str, mix: str, seed: int) -> None:
        self.log(f"[{self.done + 1}/{self.total}] {task} | {mix} | seed {seed}{self._eta()}")

    def finished(self, task: str, mix: str, seed: int, result: dict, seconds: float) -> None:
        self.done += 1
        self.remaining.remove(task)
        self.seconds.setdefault(task, []).append(seconds)
        dev, test = _metric(task, result.get("dev", {})), _metric(task, result.get("test", {}))
        scores = f"dev {dev:.2f}, test {test:.2f}" if dev is not None and test is not None else "no scores"
        self.log(
            f"[{self.done}/{self.total} done] {task} | {mix} | seed {seed}: {scores} ({seconds / 60:.1f} min)"
            f"{self._eta()}"
        )


class InvocationClock:
    """Wall time of this invocation in ``out/timings.jsonl``, rewritten after every epoch (one
    worker) or every minute (several), so an invocation that is killed still leaves its time, and
    a grid finished over several invocations (each resuming the last) has a measured total."""

    def __init__(self, out: Path, tasks: list[str], cells: int, reduced: bool, jobs: int):
        out.mkdir(parents=True, exist_ok=True)
        self.path, self.started = out / "timings.jsonl", time.perf_counter()
        self.previous = self.path.read_text().splitlines() if self.path.is_file() else []
        self.entry = {
            "tasks": tasks,
            "cells": cells,
            "reduced": reduced,
            "jobs": jobs,
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
        }

    def tick(self, cells_done: int, finished: bool = False) -> None:
        entry = dict(
            self.entry, seconds=round(time.perf_counter() - self.started, 1), cells_done=cells_done, finished=finished
        )
        atomic_write_text(self.path, "\n".join(self.previous + [json.dumps(entry)]) + "\n")


def mix_dirname(mix: str) -> str:
    return mix.replace(" ", "_").replace("λ=", "l")


def cell_row(task: str, mix: str, seed: int, result: dict) -> dict:
    return {
        "task": task,
        "mix": mix,
        "seed": seed,
        "dev": _metric(task, result["dev"]),
        "test": _metric(task, result.get("test", {})),
        "mix_s": result.get("mix", {}).get("s"),
        "gamma": result.get("mix", {}).get("gamma"),
    }


def collect_rows(out: Path) -> list[dict]:
    """Every finished cell under ``out`` (from any invocation), in task and mix order."""
    layers = max([int(p.name[5:]) + 1 for p in (out / "runs").glob("*/layer*") if p.name[5:].isdigit()] + [3])
    mixes = grid_mixes(layers)
    names = {mix_dirname(m): m for m in mixes}
    rows = []
    for task in TASKS:
        for mix in mixes:
            for path in sorted((out / "runs" / task / mix_dirname(mix)).glob("seed*/results.json")):
                seed = int(path.parent.name.removeprefix("seed"))
                rows.append(cell_row(task, names[mix_dirname(mix)], seed, json.loads(path.read_text())))
    return rows


def _metric(task: str, scores: dict) -> float | None:
    return scores.get(TASKS[task].metric) if scores else None


def _mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    return f"{statistics.mean(values):.2f}" + (f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else "")


def write_outputs(rows: list[dict], out: Path, reduced: bool) -> str:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "cells.csv", csv_text(rows, ["task", "mix", "seed", "dev", "test", "mix_s", "gamma"]))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    mixes = list(dict.fromkeys(r["mix"] for r in rows))
    header = (
        "| mix | "
        + " | ".join(f"{t} dev {TASKS[t].metric_label} | {t} test {TASKS[t].metric_label}" for t in tasks)
        + " |"
    )
    lines = [header, "|---|" + "---:|---:|" * len(tasks)]
    summary_rows = []
    for mix in mixes:
        cells = []
        for task in tasks:
            sel = [r for r in rows if r["task"] == task and r["mix"] == mix]
            cells += [_mean_std([r["dev"] for r in sel]), _mean_std([r["test"] for r in sel])]
            summary_rows.append(
                {
                    "task": task,
                    "mix": mix,
                    "dev_mean": statistics.mean([r["dev"] for r in sel]) if sel else None,
                    "test": _mean_std([r["test"] for r in sel]),
                    "dev": _mean_std([r["dev"] for r in sel]),
                }
            )
        lines.append(f"| {mix} | " + " | ".join(cells) + " |")
    weights = ["| task | mix | s_j (after softmax, mean over seeds) | γ |", "|---|---|---|---:|"]
    for task in tasks:
        for mix in mixes:
            sel = [
                r for r in rows if r["task"] == task and r["mix"] == mix and r["mix_s"] and mix.startswith("learned")
            ]
            if sel:
                s = ", ".join(f"{v:.3f}" for v in (statistics.mean(col) for col in zip(*[r["mix_s"] for r in sel])))
                gamma = statistics.mean(r["gamma"] for r in sel)
                weights.append(f"| {task} | {mix} | {s} | {gamma:.3f} |")
    table = "\n".join(lines) + "\n\n" + "\n".join(weights) + "\n"
    timings = (
        [json.loads(line) for line in (out / "timings.jsonl").read_text().splitlines()]
        if (out / "timings.jsonl").is_file()
        else []
    )
    atomic_write_text(
        out / "table.md",
        f"Grid {'(reduced)' if reduced else '(full)'}: {len(rows)} finished cells. "
        f"{describe_invocations(timings)}\n\n" + table,
    )
    atomic_write_text(out / "summary.csv", csv_text(summary_rows, ["task", "mix", "dev", "test", "dev_mean"]))
    plot(rows, out, tasks, mixes)
    return table


def csv_text(rows: list[dict], columns: list[str]) -> str:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, columns)
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def describe_invocations(timings: list[dict]) -> str:
    """'Invocations: ...; total wall time X min.' from the entries of ``timings.jsonl``."""
    if not timings:
        return ""
    parts = []
    for t in timings:
        done = t.get("cells_done", t["cells"])
        state = "" if t.get("finished", True) else ", cut off"
        parts.append(
            f"{'+'.join(t['tasks'])}: {done}/{t['cells']} cells done after {t['seconds'] / 60:.1f} min "
            f"({t.get('jobs', 1)} job{'s' if t.get('jobs', 1) > 1 else ''}{state})"
        )
    total = sum(t["seconds"] for t in timings) / 60
    return f"Invocations: {'; '.join(parts)}. Total wall time: {total:.1f} min."


def plot(rows: list[dict], out: Path, tasks: list[str], mixes: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        means, stds = [], []
        for mix in mixes:
            values = [r["dev"] for r in rows if r["task"] == task and r["mix"] == mix and r["dev"] is not None]
            means.append(statistics.mean(values) if values else 0.0)
            stds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
        # error bars: std over seeds (none with one seed)
        ax.bar(range(len(mixes)), means, yerr=stds if any(stds) else None, capsize=2, color="tab:blue")
        ax.set_xticks(range(len(mixes)), mixes, rotation=70, fontsize=7)
        low = min(means) if means else 0
        ax.set_ylim(max(0, low - 5), max(m + e for m, e in zip(means, stds)) + 1 if means else 1)
        ax.set_title(f"{task}: dev {TASKS[task].metric_label}", fontsize=9)
    fig.tight_layout()
    save_png(fig, out / "score_by_mix.png", dpi=120)
    plt.close(fig)

    learned = [m for m in mixes if m.startswith("learned")]
    if not learned:
        return
    fig, axes = plt.subplots(1, len(learned), figsize=(4.6 * len(learned), 3.6), squeeze=False)
    for ax, mix in zip(axes[0], learned):
        width, layers = 0.8 / max(len(tasks), 1), 0
        for k, task in enumerate(tasks):
            sel = [r["mix_s"] for r in rows if r["task"] == task and r["mix"] == mix and r["mix_s"]]
            if not sel:
                continue
            s = [statistics.mean(col) for col in zip(*sel)]
            ax.bar([j + k * width for j in range(len(s))], s, width, label=task)
            layers = len(s)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(layers)], [f"layer {j}" for j in range(layers)])
        ax.set_ylabel("s_j (softmax)")
        ax.set_title(f"learned layer weights, {mix}", fontsize=9)
        ax.legend(fontsize=7, ncol=len(tasks), loc="lower center", bbox_to_anchor=(0.5, -0.3))
    fig.tight_layout()
    save_png(fig, out / "learned_weights.png", dpi=120)
    plt.close(fig)
