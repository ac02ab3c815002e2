"""Results recorded before the Task-protocol refactor (tests/golden_runs.py) are reproduced exactly,
and run directories written then still load and predict the same."""

from __future__ import annotations

import json
import shutil

import pytest

from data.wordnet import DEBIAN_WORDNET_DIR
from golden_runs import GOLDEN, RUNS, previous_default, run_grid_golden, run_task
from helpers import shared_path
from tasks.cli import main


@pytest.fixture(autouse=True)
def on_the_previous_default():
    """Everything here was recorded on the first shipped 'default' (tests/golden_runs.py)."""
    with previous_default():
        yield


DATA_OF = {"ner": "conll2003", "pos": "conll2003", "sst5": "sst", "wsd": "wsd", "grid": "conll2003"}


def needs(name: str) -> None:
    shared_path(DATA_OF[name])
    if name == "wsd" and not (DEBIAN_WORDNET_DIR / "index.sense").is_file():
        pytest.skip("WordNet 3.0 is not installed (apt-get install -y wordnet-base wordnet-sense-index)")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RUNS))
def test_small_runs_reproduce_the_recorded_results_exactly(name, tmp_path):
    needs(name)
    expected = json.loads((GOLDEN / f"{name}.json").read_text())
    assert json.loads(json.dumps(run_task(name, tmp_path / name))) == expected


@pytest.mark.slow
def test_layer_grid_reproduces_the_recorded_cells_exactly(tmp_path):
    needs("grid")
    expected = json.loads((GOLDEN / "grid.json").read_text())
    assert json.loads(json.dumps(run_grid_golden(tmp_path / "grid"))) == expected


@pytest.mark.parametrize("name", ["ner", "pos", "sst5", "wsd"])
def test_run_directories_written_before_the_refactor_still_predict_the_same(name, tmp_path):
    if name == "wsd" and not (DEBIAN_WORDNET_DIR / "index.sense").is_file():
        pytest.skip("WordNet 3.0 is not installed (apt-get install -y wordnet-base wordnet-sense-index)")
    run = tmp_path / "run"
    shutil.copytree(GOLDEN / "old_runs" / name, run)
    data = next((run / "data").iterdir())
    assert main(["evaluate", str(run), "--data", str(data), "--output", str(tmp_path / "pred.txt")]) == 0
    assert (tmp_path / "pred.txt").read_text() == (run / "dev.predictions.txt").read_text()
