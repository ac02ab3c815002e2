"""The layer-weighting grid and the linear POS/chunk probes on tiny files."""
import csv

from conftest import write_random_model
from tasks.layer_benchmark import MIXES, run_grid
from test_ner_pipeline import SENTENCES, write_conll


def test_grid_runs_cells_aggregates_invocations_and_plots(tmp_path):
    write_conll(tmp_path / "train.txt", SENTENCES * 3)
    write_conll(tmp_path / "dev.txt", SENTENCES[:3])
    write_conll(tmp_path / "test.txt", SENTENCES[3:])
    options, weights = write_random_model(tmp_path / "model")
    backbone = {"name": None, "options": str(options), "weights": str(weights)}
    extra = {"data.dir": str(tmp_path), "data.train": "train.txt", "data.dev": "dev.txt", "data.test": "test.txt",
             "train.epochs": 2, "train.threads": 1, "model.hidden": 8, "model.words.min_count": 1}
    out = tmp_path / "grid"
    run_grid(["pos", "chunk"], 1, backbone, out, mixes=["layer1", "learned λ=0.001"], extra=extra, log=lambda *_: None)
    rows = run_grid(["ner"], 1, backbone, out, mixes=["concat"], extra=extra, log=lambda *_: None)
    assert {(r["task"], r["mix"]) for r in rows} == {("pos", "layer1"), ("pos", "learned λ=0.001"),
                                                     ("chunk", "layer1"), ("chunk", "learned λ=0.001"), ("ner", "concat")}
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
