"""The layer-weighting grid and the linear POS/chunk probes on tiny files."""

import csv

from helpers import SENTENCES, write_conll, write_random_model
from tasks.experiments.layer_grid import MIXES, run_grid


def _tiny_grid_inputs(tmp_path):
    write_conll(tmp_path / "train.txt", SENTENCES * 3)
    write_conll(tmp_path / "dev.txt", SENTENCES[:3])
    write_conll(tmp_path / "test.txt", SENTENCES[3:])
    options, weights = write_random_model(tmp_path / "model")
    backbone = {"name": None, "options": str(options), "weights": str(weights)}
    extra = {
        "data.dir": str(tmp_path),
        "data.train": "train.txt",
        "data.dev": "dev.txt",
        "data.test": "test.txt",
        "train.epochs": 2,
        "train.threads": 1,
    }
    return backbone, extra


NER_EXTRA = {"model.hidden": 8, "model.words.min_count": 1}  # keys the linear probes do not have


def test_grid_runs_cells_aggregates_invocations_and_plots(tmp_path):
    backbone, extra = _tiny_grid_inputs(tmp_path)
    out = tmp_path / "grid"
    run_grid(["pos", "chunk"], 1, backbone, out, mixes=["layer1", "learned λ=0.001"], extra=extra, log=lambda *_: None)
    rows = run_grid(["ner"], 1, backbone, out, mixes=["concat"], extra={**extra, **NER_EXTRA}, log=lambda *_: None)
    assert {(r["task"], r["mix"]) for r in rows} == {
        ("pos", "layer1"),
        ("pos", "learned λ=0.001"),
        ("chunk", "layer1"),
        ("chunk", "learned λ=0.001"),
        ("ner", "concat"),
    }
    learned = [r for r in rows if r["mix"] == "learned λ=0.001"]
    assert all(abs(sum(r["mix_s"]) - 1) < 1e-4 and r["gamma"] > 0 for r in learned)
    assert all(r["mix_s"] == [0.0, 1.0, 0.0] for r in rows if r["mix"] == "layer1")
    assert all(0 <= r["dev"] <= 100 for r in rows)
    table = (out / "table.md").read_text()
    assert "pos dev accuracy" in table and "chunk test chunk F1" in table and "ner dev F1" in table
    assert (out / "score_by_mix.png").stat().st_size > 1000 and (out / "learned_weights.png").is_file()
    with (out / "cells.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 5


def test_all_eight_mixes_of_the_issue_are_defined():
    assert list(MIXES) == ["layer0", "layer1", "layer2", "top", "average", "learned λ=1", "learned λ=0.001", "concat"]


def test_parallel_workers_give_the_serial_results_and_a_rerun_keeps_finished_cells(tmp_path, capfd):
    import json
    import os

    backbone, extra = _tiny_grid_inputs(tmp_path)
    mixes = ["layer1", "learned λ=0.001"]
    serial = run_grid(["pos", "chunk"], 2, backbone, tmp_path / "serial", mixes=mixes, extra=extra, log=lambda *_: None)
    lines = []
    parallel = run_grid(
        ["pos", "chunk"], 2, backbone, tmp_path / "parallel", mixes=mixes, extra=extra, log=lines.append, jobs=2
    )
    assert len(serial) == len(parallel) == 8
    assert [(r["task"], r["mix"], r["seed"], r["dev"], r["test"], r["mix_s"]) for r in serial] == [
        (r["task"], r["mix"], r["seed"], r["dev"], r["test"], r["mix_s"]) for r in parallel
    ]
    assert sum("done]" in line for line in lines) == 8 and "8 cells on 2 worker processes" in "\n".join(lines)
    workers = {line.rsplit("worker ", 1)[1] for line in capfd.readouterr().out.splitlines() if "started" in line}
    assert len(workers) >= 1 and str(os.getpid()) + ")" not in workers  # cells ran in child processes
    timings = [json.loads(line) for line in (tmp_path / "parallel" / "timings.jsonl").read_text().splitlines()]
    assert len(timings) == 1 and timings[0]["jobs"] == 2 and timings[0]["cells_done"] == 8 and timings[0]["finished"]

    results = tmp_path / "parallel" / "runs" / "pos" / "layer1" / "seed1" / "results.json"
    before = results.stat().st_mtime_ns
    lines.clear()
    again = run_grid(
        ["pos", "chunk"], 2, backbone, tmp_path / "parallel", mixes=mixes, extra=extra, log=lines.append, jobs=2
    )
    assert results.stat().st_mtime_ns == before and len(again) == 8
    assert lines[0] == "8 of 8 cells already finished in this output directory: kept"
    assert "Total wall time" in (tmp_path / "parallel" / "table.md").read_text()


def test_a_cut_off_invocation_is_reported_as_such():
    from tasks.experiments.layer_grid import describe_invocations

    text = describe_invocations(
        [
            {"tasks": ["ner"], "cells": 24, "seconds": 600.0, "jobs": 2, "cells_done": 5, "finished": False},
            {"tasks": ["ner"], "cells": 24, "seconds": 1200.0, "jobs": 2, "cells_done": 24, "finished": True},
        ]
    )
    assert text == (
        "Invocations: ner: 5/24 cells done after 10.0 min (2 jobs, cut off); "
        "ner: 24/24 cells done after 20.0 min (2 jobs). Total wall time: 30.0 min."
    )


def test_time_left_is_estimated_per_task_and_shared_by_the_workers():
    from tasks.experiments.layer_grid import GridProgress
    from tasks.registry import TASKS

    todo = [("ner", "layer0", 1), ("ner", "layer1", 1), ("pos", "layer0", 1), ("pos", "layer1", 1)]
    lines = []
    progress = GridProgress(todo, total=6, log=lines.append, jobs=2)
    assert lines == ["2 of 6 cells already finished in this output directory: kept"]
    assert progress.seconds_left() is None
    progress.finished("ner", "layer0", 1, {"dev": {"f1": 80.0}, "test": {"f1": 75.0}}, seconds=300.0)
    # left: one ner cell (300 s measured) + two pos cells (not measured: scaled by the tasks' cost), over 2 workers
    per_cost = 300.0 / TASKS["ner"].cost
    assert progress.seconds_left() == (300.0 + 2 * TASKS["pos"].cost * per_cost) / 2
    progress.finished("pos", "layer0", 1, {"dev": {"accuracy": 90.0}, "test": {"accuracy": 91.0}}, seconds=12.0)
    assert progress.seconds_left() == (300.0 + 12.0) / 2
    assert lines[-1] == "[4/6 done] pos | layer0 | seed 1: dev 90.00, test 91.00 (0.2 min); about 3 min left"


def test_top_is_copied_from_the_top_layer_not_trained_again(tmp_path):
    import json

    backbone, extra = _tiny_grid_inputs(tmp_path)  # a 2-layer biLM: "top" is "layer2"
    lines = []
    rows = run_grid(["pos"], 2, backbone, tmp_path / "grid", mixes=["layer2", "top"], extra=extra, log=lines.append)
    assert "'top' is 'layer2' on this backbone: its cells are copied from 'layer2', not trained again" in lines
    assert sum("done]" in line for line in lines) == 2  # only the layer2 cells trained
    by_mix = {(r["mix"], r["seed"]): r for r in rows}
    for seed in (1, 2):
        assert by_mix[("top", seed)]["dev"] == by_mix[("layer2", seed)]["dev"]
        assert by_mix[("top", seed)]["test"] == by_mix[("layer2", seed)]["test"]
        top_dir = tmp_path / "grid" / "runs" / "pos" / "top" / f"seed{seed}"
        assert json.loads((top_dir / "results.json").read_text())["same_as"] == "layer2"
        assert not (top_dir / "best.pt").exists()
    only_top = run_grid(["chunk"], 1, backbone, tmp_path / "alone", mixes=["top"], extra=extra, log=lambda *_: None)
    assert (tmp_path / "alone" / "runs" / "chunk" / "top" / "seed1" / "best.pt").is_file() and len(only_top) == 1


def test_cells_read_the_feature_store_so_a_later_invocation_skips_the_backbone(tmp_path, monkeypatch):
    from elmo_core.bilm import ElmoBiLm

    backbone, extra = _tiny_grid_inputs(tmp_path)
    out = tmp_path / "grid"
    first = run_grid(["pos"], 1, backbone, out, mixes=["layer1"], extra=extra, log=lambda *_: None)
    assert (out / "features" / "store.json").is_file()

    def no_backbone(*_args, **_kwargs):
        raise AssertionError("the backbone ran although every sentence is in the store")

    monkeypatch.setattr(ElmoBiLm, "forward_many", no_backbone)  # forward() goes through it too
    rows = run_grid(["pos"], 1, backbone, out, mixes=["layer1", "layer2"], extra=extra, log=lambda *_: None)
    assert {r["mix"] for r in rows} == {"layer1", "layer2"}
    assert [r for r in rows if r["mix"] == "layer1"] == first
    with_memory_only = tmp_path / "in-memory"
    monkeypatch.undo()
    in_memory = run_grid(
        ["pos"], 1, backbone, with_memory_only, mixes=["layer1"], extra=extra, log=lambda *_: None, store=None
    )
    assert not (with_memory_only / "features").exists() and len(in_memory) == 1


def test_command_line_puts_the_store_where_asked_and_none_with_no_store(tmp_path, capsys):
    import pytest

    from tasks.cli import main

    backbone, extra = _tiny_grid_inputs(tmp_path)
    common = [
        "benchmark",
        "layers",
        "--tasks",
        "pos",
        "--seeds",
        "1",
        "--mixes",
        "layer1",
        "--options",
        backbone["options"],
        "--weights",
        backbone["weights"],
    ]
    common += [arg for key, value in extra.items() for arg in ("--set", f"{key}={value}")]
    assert main(common + ["--out", str(tmp_path / "a"), "--store", str(tmp_path / "shared-store")]) == 0
    assert (tmp_path / "shared-store" / "store.json").is_file() and not (tmp_path / "a" / "features").exists()
    assert main(common + ["--out", str(tmp_path / "b"), "--no-store"]) == 0
    assert (tmp_path / "b" / "cells.csv").is_file() and not (tmp_path / "b" / "features").exists()
    with pytest.raises(SystemExit):
        main(common + ["--out", str(tmp_path / "c"), "--store", str(tmp_path / "s"), "--no-store"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_grid_wide_override_no_task_of_the_grid_has_is_an_error_before_any_cell(tmp_path):
    import pytest

    from tasks.errors import UsageError

    backbone, extra = _tiny_grid_inputs(tmp_path)
    with pytest.raises(UsageError, match="model.hiden: no task of this grid"):
        run_grid(
            ["pos", "ner"],
            1,
            backbone,
            tmp_path / "grid",
            mixes=["layer1"],
            extra={**extra, "model.hiden": 8},
            log=lambda *_: None,
        )
    assert not (tmp_path / "grid" / "runs").exists()


def test_grid_overrides_reach_only_the_tasks_that_have_the_key(tmp_path):
    from tasks.experiments.layer_grid import cell_config, grid_mixes

    backbone, extra = _tiny_grid_inputs(tmp_path)
    mix = grid_mixes(3)["layer1"]
    assert cell_config("ner", mix, 1, backbone, False, {**extra, **NER_EXTRA}).model.hidden == 8
    assert not hasattr(cell_config("pos", mix, 1, backbone, False, {**extra, **NER_EXTRA}).model, "hidden")
