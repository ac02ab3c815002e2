"""`elmo-tasks benchmark layers`: every task x every layer weighting x seeds, on one backbone.

The ELMo paper's analysis as one command: does mixing all layers beat the top layer, and which
layer holds syntax (POS, chunking) and which semantics (WSD)? Features are computed once per
dataset and shared by all cells (only the heads train), model selection uses dev, test is reported.
"""
from __future__ import annotations

import csv
import datetime
import json
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import torch

from .config import load_config

REPO = Path(__file__).resolve().parents[1]
MIXES: dict[str, dict] = {
    "layer0": {"mode": "single", "layer": 0},
    "layer1": {"mode": "single", "layer": 1},
    "layer2": {"mode": "single", "layer": 2},
    "top": {"mode": "top"},
    "average": {"mode": "average"},
    "learned λ=1": {"mode": "learned", "l2": 1.0},
    "learned λ=0.001": {"mode": "learned", "l2": 0.001},
    "concat": {"mode": "concat"},
}
TASK_CONFIGS = {"ner": "ner_conll2003.yaml", "pos": "probe_pos.yaml", "chunk": "probe_chunk.yaml",
                "sst5": "sst5.yaml", "sst2": "sst2.yaml", "wsd": "wsd.yaml"}
# The quick grid: documented in docs/layer_weighting.md; sized for ~30 minutes on 2 CPU cores.
REDUCED = {
    "ner": {"data.max_train_sentences": 5000, "data.max_dev_sentences": 1000, "train.epochs": 4, "model.hidden": 128},
    "pos": {"data.max_train_sentences": 3000, "data.max_dev_sentences": 1000, "train.epochs": 2},
    "chunk": {"data.max_train_sentences": 3000, "data.max_dev_sentences": 1000, "train.epochs": 2},
    "sst5": {"train.epochs": 3},
    "sst2": {"train.epochs": 3},
    "wsd": {"train.epochs": 2},
}
METRIC_NAMES = {"ner": "F1", "pos": "accuracy", "chunk": "chunk F1", "sst5": "accuracy", "sst2": "accuracy", "wsd": "F1"}


def cell_config(task: str, mix: dict, seed: int, backbone: dict, reduced: bool, extra: dict,
                store: Path | None = None) -> dict:
    """The task's config for one cell. ``store``: the on-disk feature store every cell reads (and
    the first one fills); ``None`` keeps the features in memory only."""
    backbone = {**backbone, "store": str(store) if store is not None else None}
    overrides = {"train.seed": seed, "model.elmo.enabled": True, "model.elmo.mix": dict(mix), "backbone": backbone}
    if reduced:
        overrides.update(REDUCED.get(task, {}))
    overrides.update(extra)
    return load_config(REPO / "configs" / TASK_CONFIGS[task], overrides)


# Rough relative cost of one cell, to start the longest cells first when cells run in parallel.
CELL_COST = {"ner": 10, "sst5": 4, "sst2": 4, "wsd": 3, "pos": 1, "chunk": 1}
_inherited: dict = {}  # the feature and backbone caches forked workers inherit (see run_grid)


def run_grid(tasks: list[str], seeds: int, backbone: dict, out: Path, reduced: bool = False,
             mixes: list[str] | None = None, extra: dict | None = None, log=print, jobs: int = 1,
             store: Path | None | str = "default") -> list[dict]:
    """Train and score every (task, mix, seed) cell into ``out/runs``; cells already finished
    there (by any earlier invocation) are kept, a cell cut off mid-training resumes from its last
    epoch. ``jobs > 1`` trains that many cells at once in forked worker processes with one thread
    each; the features are computed first, once, in this process, and the workers inherit them.
    ``store``: the feature store the cells read, ``out/features`` by default, so the backbone runs
    once per sentence over all invocations; ``None``: in memory, once per invocation.
    Returns the rows of every finished cell under ``out``."""
    from .trainer import Trainer, warm_feature_cache

    mixes = mixes or list(MIXES)
    extra = dict(extra or {})
    store = out / "features" if store == "default" else store
    log = _flushing(log)
    if jobs > 1:
        extra["train.threads"] = 1  # one core per cell: OpenMP pools beside each other spin-wait
    cells = [(t, m, s) for t in tasks for m in mixes for s in range(1, seeds + 1)]
    todo = [c for c in cells if not (cell_dir(out, *c) / "results.json").is_file()]
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
            config = cell_config(task, MIXES[mix], seed, backbone, reduced, extra, store)
            result = Trainer(config, cell_dir(out, task, mix, seed), progress=False,
                             log=lambda *_: clock.tick(progress.done),  # the trainer logs once per epoch
                             feature_cache=feature_cache, backbone_cache=backbone_cache).run()
            progress.finished(task, mix, seed, result, time.perf_counter() - started)
            clock.tick(progress.done)
    elif todo:
        for task in dict.fromkeys(t for t, _, _ in todo):
            first_mix = next(m for t, m, _ in todo if t == task)
            seconds = warm_feature_cache(cell_config(task, MIXES[first_mix], 1, backbone, reduced, extra, store),
                                         feature_cache, backbone_cache)
            source = f"from the store {store}" if store is not None else "in memory"
            log(f"features for {task} {source}, once, shared by its cells: {sum(seconds.values()):.1f} s")
        todo.sort(key=lambda c: -CELL_COST.get(c[0], 1))  # stable: task, mix, seed order within a cost
        _inherited.update(features=feature_cache, backbones=backbone_cache)
        log(f"{len(todo)} cells on {jobs} worker processes (1 thread each)")
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"),
                                 initializer=torch.set_num_threads, initargs=(1,)) as pool:
            pending = {pool.submit(_run_cell_in_worker, cell_config(t, MIXES[m], s, backbone, reduced, extra, store),
                                   cell_dir(out, t, m, s), f"{t} | {m} | seed {s}"): (t, m, s) for t, m, s in todo}
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


def equal_mixes(mixes: list[str], backbone: dict) -> dict[str, str]:
    """``{mix: the grid's mix it equals on this backbone}``: "top" is "layerL" of an L-layer biLM.
    Such cells would train the same model on the same features, so they are copied instead."""
    from .trainer import backbone_files

    if "top" not in mixes:
        return {}
    options = json.loads(Path(backbone_files({"backbone": backbone})[0]).read_text())
    top = f"layer{options['lstm']['n_layers']}"
    return {"top": top} if top in mixes else {}


def copy_equal_cell(out: Path, task: str, mix: str, source_mix: str, seed: int) -> None:
    from .trainer import write_json

    source = cell_dir(out, task, source_mix, seed) / "results.json"
    target = cell_dir(out, task, mix, seed)
    target.mkdir(parents=True, exist_ok=True)
    write_json(target / "results.json", dict(json.loads(source.read_text()), same_as=source_mix))


def _flushing(log):
    """``log``, then flush stdout: lines reach a log file whole and in order beside the workers'
    lines, and forked workers never inherit (and print again) buffered text."""
    def log_and_flush(line: str) -> None:
        log(line)
        sys.stdout.flush()
    return log_and_flush


def _run_cell_in_worker(config: dict, run_dir: Path, label: str) -> tuple[dict, float]:
    """(results, wall seconds) of one cell, in a worker process."""
    from .trainer import Trainer

    sys.stdout.write(f"  started {label} (worker {os.getpid()})\n")  # one write: workers share the stream
    sys.stdout.flush()
    started = time.perf_counter()
    result = Trainer(config, run_dir, progress=False, log=lambda *_: None,
                     feature_cache=_inherited.get("features"), backbone_cache=_inherited.get("backbones")).run()
    return result, time.perf_counter() - started


def cell_dir(out: Path, task: str, mix: str, seed: int) -> Path:
    return out / "runs" / task / mix_dirname(mix) / f"seed{seed}"


class GridProgress:
    """One line per cell: which cell starts (serial) or finished, its scores, and the time left.

    The time left is estimated per task (cells of one task cost alike, cells of different tasks
    do not): the mean measured time of the task's finished cells, or for a task with none yet,
    ``CELL_COST`` scaled by what the finished cells took; divided by the number of workers."""

    def __init__(self, todo: list[tuple[str, str, int]], total: int, log, jobs: int = 1):
        self.remaining = [task for task, _, _ in todo]
        self.total, self.done, self.log, self.jobs = total, total - len(todo), log, jobs
        self.seconds: dict[str, list[float]] = {}
        if self.done:
            log(f"{self.done} of {total} cells already finished in this output directory: kept")

    def seconds_left(self) -> float | None:
        if not self.seconds:
            return None
        per_cost = statistics.mean(t / CELL_COST.get(task, 1) for task, times in self.seconds.items() for t in times)
        estimate = {task: statistics.mean(times) for task, times in self.seconds.items()}
        return sum(estimate.get(task, CELL_COST.get(task, 1) * per_cost) for task in self.remaining) / self.jobs

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
        self.log(f"[{self.done}/{self.total} done] {task} | {mix} | seed {seed}: {scores} ({seconds / 60:.1f} min)"
                 f"{self._eta()}")


class InvocationClock:
    """Wall time of this invocation in ``out/timings.jsonl``, rewritten after every epoch (one
    worker) or every minute (several), so an invocation that is killed still leaves its time, and
    a grid finished over several invocations (each resuming the last) has a measured total."""

    def __init__(self, out: Path, tasks: list[str], cells: int, reduced: bool, jobs: int):
        out.mkdir(parents=True, exist_ok=True)
        self.path, self.started = out / "timings.jsonl", time.perf_counter()
        self.previous = self.path.read_text().splitlines() if self.path.is_file() else []
        self.entry = {"tasks": tasks, "cells": cells, "reduced": reduced, "jobs": jobs,
                      "started": datetime.datetime.now().isoformat(timespec="seconds")}

    def tick(self, cells_done: int, finished: bool = False) -> None:
        entry = dict(self.entry, seconds=round(time.perf_counter() - self.started, 1), cells_done=cells_done,
                     finished=finished)
        partial = self.path.with_name(self.path.name + ".part")
        partial.write_text("\n".join(self.previous + [json.dumps(entry)]) + "\n")
        os.replace(partial, self.path)


def mix_dirname(mix: str) -> str:
    return mix.replace(" ", "_").replace("λ=", "l")


def cell_row(task: str, mix: str, seed: int, result: dict) -> dict:
    return {"task": task, "mix": mix, "seed": seed, "dev": _metric(task, result["dev"]),
            "test": _metric(task, result.get("test", {})), "mix_s": result.get("mix", {}).get("s"),
            "gamma": result.get("mix", {}).get("gamma")}


def collect_rows(out: Path) -> list[dict]:
    """Every finished cell under ``out`` (from any invocation), in task and mix order."""
    names = {mix_dirname(m): m for m in MIXES}
    rows = []
    for task in TASK_CONFIGS:
        for mix in MIXES:
            for path in sorted((out / "runs" / task / mix_dirname(mix)).glob("seed*/results.json")):
                seed = int(path.parent.name.removeprefix("seed"))
                rows.append(cell_row(task, names[mix_dirname(mix)], seed, json.loads(path.read_text())))
    return rows


def _metric(task: str, scores: dict) -> float | None:
    if not scores:
        return None
    key = {"pos": "accuracy", "sst5": "accuracy", "sst2": "accuracy"}.get(task, "f1")
    return scores.get(key)


def _mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    return f"{statistics.mean(values):.2f}" + (f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else "")


def write_outputs(rows: list[dict], out: Path, reduced: bool) -> str:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "cells.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["task", "mix", "seed", "dev", "test", "mix_s", "gamma"])
        writer.writeheader()
        writer.writerows(rows)
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    mixes = list(dict.fromkeys(r["mix"] for r in rows))
    header = "| mix | " + " | ".join(f"{t} dev {METRIC_NAMES[t]} | {t} test {METRIC_NAMES[t]}" for t in tasks) + " |"
    lines = [header, "|---|" + "---:|---:|" * len(tasks)]
    summary_rows = []
    for mix in mixes:
        cells = []
        for task in tasks:
            sel = [r for r in rows if r["task"] == task and r["mix"] == mix]
            cells += [_mean_std([r["dev"] for r in sel]), _mean_std([r["test"] for r in sel])]
            summary_rows.append({"task": task, "mix": mix, "dev_mean": statistics.mean([r["dev"] for r in sel]) if sel else None,
                                 "test": _mean_std([r["test"] for r in sel]), "dev": _mean_std([r["dev"] for r in sel])})
        lines.append(f"| {mix} | " + " | ".join(cells) + " |")
    weights = ["| task | mix | s_j (after softmax, mean over seeds) | γ |", "|---|---|---|---:|"]
    for task in tasks:
        for mix in mixes:
            sel = [r for r in rows if r["task"] == task and r["mix"] == mix and r["mix_s"] and mix.startswith("learned")]
            if sel:
                s = [statistics.mean(col) for col in zip(*[r["mix_s"] for r in sel])]
                weights.append(f"| {task} | {mix} | {', '.join(f'{v:.3f}' for v in s)} | {statistics.mean(r['gamma'] for r in sel):.3f} |")
    table = "\n".join(lines) + "\n\n" + "\n".join(weights) + "\n"
    timings = [json.loads(line) for line in (out / "timings.jsonl").read_text().splitlines()] if (out / "timings.jsonl").is_file() else []
    (out / "table.md").write_text(f"Grid {'(reduced)' if reduced else '(full)'}: {len(rows)} finished cells. "
                                  f"{describe_invocations(timings)}\n\n" + table)
    with (out / "summary.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["task", "mix", "dev", "test", "dev_mean"])
        writer.writeheader()
        writer.writerows(summary_rows)
    plot(rows, out, tasks, mixes)
    return table


def describe_invocations(timings: list[dict]) -> str:
    """'Invocations: ...; total wall time X min.' from the entries of ``timings.jsonl``."""
    if not timings:
        return ""
    parts = []
    for t in timings:
        done = t.get("cells_done", t["cells"])
        state = "" if t.get("finished", True) else ", cut off"
        parts.append(f"{'+'.join(t['tasks'])}: {done}/{t['cells']} cells done after {t['seconds'] / 60:.1f} min "
                     f"({t.get('jobs', 1)} job{'s' if t.get('jobs', 1) > 1 else ''}{state})")
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
        ax.set_title(f"{task}: dev {METRIC_NAMES[task]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "score_by_mix.png", dpi=120)
    plt.close(fig)

    learned = [m for m in mixes if m.startswith("learned")]
    if not learned:
        return
    fig, axes = plt.subplots(1, len(learned), figsize=(4.6 * len(learned), 3.6), squeeze=False)
    for ax, mix in zip(axes[0], learned):
        width = 0.8 / max(len(tasks), 1)
        for k, task in enumerate(tasks):
            sel = [r["mix_s"] for r in rows if r["task"] == task and r["mix"] == mix and r["mix_s"]]
            if not sel:
                continue
            s = [statistics.mean(col) for col in zip(*sel)]
            ax.bar([j + k * width for j in range(len(s))], s, width, label=task)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(3)], ["layer 0", "layer 1", "layer 2"])
        ax.set_ylabel("s_j (softmax)")
        ax.set_title(f"learned layer weights, {mix}", fontsize=9)
        ax.legend(fontsize=7, ncol=len(tasks), loc="lower center", bbox_to_anchor=(0.5, -0.3))
    fig.tight_layout()
    fig.savefig(out / "learned_weights.png", dpi=120)
    plt.close(fig)
