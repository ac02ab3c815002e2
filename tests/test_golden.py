"""Results recorded before the Task-protocol refactor (tests/golden_runs.py) are reproduced exactly,
and run directories written then still load and predict the same."""

from __future__ import annotations

import json
import math
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


V1_LABEL, RECORDED_LABEL = "named model 'default@v1'", "named model 'default'"


def as_recorded(value):
    """``value`` as it was recorded, before named models carried their release: the v1 label
    (and only it: any other backbone label stays and fails the comparison) reads as the bare name."""
    if isinstance(value, dict):
        return {k: as_recorded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_recorded(v) for v in value]
    return RECORDED_LABEL if value == V1_LABEL else value


# The records were made on an AVX-512 CPU; on an AVX2 one (AMD EPYC Zen 3) the same seeds give the
# same predictions and scores, but a float sum such as the mean training loss differs in its last
# bits (measured: 8e-9 relative). A changed prediction moves a score by far more than this.
FLOAT_REL_TOL = 1e-6


def differences(found, expected, path: str = "") -> list[str]:
    """Where ``found`` differs from ``expected``: floats within :data:`FLOAT_REL_TOL`, all else exact."""
    if isinstance(found, float) and isinstance(expected, float):
        return (
            []
            if math.isclose(found, expected, rel_tol=FLOAT_REL_TOL, abs_tol=1e-12)
            else [f"{path}: {found!r} != {expected!r}"]
        )
    if type(found) is not type(expected):
        return [f"{path}: {found!r} != {expected!r}"]
    if isinstance(found, dict):
        keys = sorted(set(found) | set(expected))
        return [
            d for k in keys for d in differences(found.get(k, "<missing>"), expected.get(k, "<missing>"), f"{path}.{k}")
        ]
    if isinstance(found, list):
        if len(found) != len(expected):
            return [f"{path}: {len(found)} items != {len(expected)}"]
        return [d for i, (a, b) in enumerate(zip(found, expected)) for d in differences(a, b, f"{path}[{i}]")]
    return [] if found == expected else [f"{path}: {found!r} != {expected!r}"]


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
    assert differences(as_recorded(json.loads(json.dumps(run_task(name, tmp_path / name)))), expected) == []


@pytest.mark.slow
def test_layer_grid_reproduces_the_recorded_cells_exactly(tmp_path):
    needs("grid")
    expected = json.loads((GOLDEN / "grid.json").read_text())
    assert differences(as_recorded(json.loads(json.dumps(run_grid_golden(tmp_path / "grid")))), expected) == []


@pytest.mark.parametrize("name", ["ner", "pos", "sst5", "wsd"])
def test_run_directories_written_before_the_refactor_still_predict_the_same(name, tmp_path):
    if name == "wsd" and not (DEBIAN_WORDNET_DIR / "index.sense").is_file():
        pytest.skip("WordNet 3.0 is not installed (apt-get install -y wordnet-base wordnet-sense-index)")
    run = tmp_path / "run"
    shutil.copytree(GOLDEN / "old_runs" / name, run)
    data = next((run / "data").iterdir())
    assert main(["evaluate", str(run), "--data", str(data), "--output", str(tmp_path / "pred.txt")]) == 0
    assert (tmp_path / "pred.txt").read_text() == (run / "dev.predictions.txt").read_text()


def test_the_comparison_ignores_last_bit_sums_but_not_a_changed_score():
    recorded = {"metrics": [{"dev_f1": 38.95486935866983, "train_loss": 2.2818310379981996}], "backbone": "x"}
    other_cpu = {"metrics": [{"dev_f1": 38.95486935866983, "train_loss": 2.281831020116806}], "backbone": "x"}
    assert differences(other_cpu, recorded) == []
    changed = {"metrics": [{"dev_f1": 38.96, "train_loss": 2.2818310379981996}], "backbone": "x"}
    assert differences(changed, recorded) == [".metrics[0].dev_f1: 38.96 != 38.95486935866983"]
    assert differences({**recorded, "backbone": "y"}, recorded) == [".backbone: 'y' != 'x'"]
