"""Typed, strict configs: every unknown key, wrong type and out-of-range value is reported, with
the file and key path, before any data is read; one resume rule; the CLI's error contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from data.config import ConfigError, parse_overrides
from helpers import REPO, SENTENCES, write_conll
from tasks.cli import main
from tasks.errors import RunDirError
from tasks.registry import load_task_config
from tasks.trainer import Trainer

NER = REPO / "configs" / "ner_conll2003.yaml"


def problems(path: Path, overrides: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_task_config(path, overrides)
    assert str(path) in str(caught.value)
    return caught.value.problems


@pytest.mark.parametrize(
    "key, suggestion",
    [
        ("model.hiden", "did you mean model.hidden?"),
        ("train.epoch", "did you mean train.epochs?"),
        ("model.elmo.mix.moed", "did you mean model.elmo.mix.mode?"),
        ("model.epochs", "'epochs' belongs in train.epochs"),
    ],
)
def test_unknown_keys_name_the_key_path_and_the_closest_valid_key(key, suggestion):
    assert problems(NER, {key: 3}) == [f"{key}: unknown key; {suggestion}"]


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("train.epochs", "ten", "train.epochs: expected an integer, found 'ten' (str)"),
        ("train.epochs", 0, "train.epochs: expected a number > 0, found 0"),
        ("train.batch_size", -32, "train.batch_size: expected a number > 0, found -32"),
        ("train.lr", 0, "train.lr: expected a number > 0, found 0.0"),
        ("model.dropout", 1.0, "model.dropout: expected a number in [0, 1), found 1.0"),
        ("model.elmo.dropout", -0.1, "model.elmo.dropout: expected a number in [0, 1), found -0.1"),
        (
            "model.elmo.mix.mode",
            "learnt",
            "model.elmo.mix.mode: expected one of 'learned', 'average', 'top', "
            "'single', 'concat', found 'learnt' (str)",
        ),
        ("model.tag_scheme", "BIOXYZ", "model.tag_scheme: expected one of IOB1, IOB2, BIOES, IO, found 'BIOXYZ'"),
        ("data.scheme", "IOB9", "data.scheme: expected one of auto, IOB1, IOB2, BIOES, IO, found 'IOB9'"),
        ("model.elmo.enabled", "yes", "model.elmo.enabled: expected true or false, found 'yes' (str)"),
        ("data.limit", 0, "data.limit: expected a number > 0, found 0"),
        ("data.limit", {"trian": 5}, "data.limit.trian: expected one of train, dev, test"),
        ("model.words", 5, "model.words: expected a section (key: value lines), found 5 (int)"),
    ],
)
def test_wrong_types_and_ranges_name_key_expected_and_found(key, value, message):
    assert problems(NER, {key: value}) == [message]


def test_every_problem_is_reported_at_once_and_the_message_stays_short():
    found = problems(NER, {f"model.bad{i}": 1 for i in range(30)} | {"train.epochs": -1})
    assert len(found) == 31
    with pytest.raises(ConfigError) as caught:
        load_task_config(NER, {f"model.bad{i}": 1 for i in range(30)})
    assert len(str(caught.value).splitlines()) <= 15 and "and 18 more" in str(caught.value)


def test_mode_single_needs_a_layer_and_the_task_name_is_checked(tmp_path):
    assert problems(NER, {"model.elmo.mix": {"mode": "single"}}) == [
        "model.elmo.mix.layer: mode 'single' needs the layer index (0 = the char CNN)"
    ]
    assert problems(NER, {"task": "nre"}) == [
        "task: 'nre'; expected one of ner, pos, chunk, sst5, sst2, wsd; did you mean ner?"
    ]
    assert problems(REPO / "configs" / "probe_pos.yaml", {"model.elmo.enabled": False}) == [
        "model.elmo.enabled: a probe reads the ELMo layers only; it cannot run without them"
    ]


def test_values_from_the_environment_are_typed(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text(NER.read_text().replace("epochs: 20", "epochs: ${EPOCHS:-7}"))
    assert load_task_config(path).train.epochs == 7
    monkeypatch.setenv("EPOCHS", "3")
    assert load_task_config(path).train.epochs == 3
    assert load_task_config(NER, {"train.lr": "1e-3"}).train.lr == 0.001  # YAML 1.1 reads 1e-3 as a string


def test_one_limit_key_for_every_task():
    assert load_task_config(NER, {"data.limit": 5}).data.limit_for("dev") == 5
    split_limits = load_task_config(NER, {"data.limit": {"train": 5}}).data
    assert split_limits.limit_for("train") == 5 and split_limits.limit_for("test") is None
    for name in ("sst5.yaml", "wsd.yaml", "probe_chunk.yaml"):
        assert load_task_config(REPO / "configs" / name, {"data.limit": 9}).data.limit_for("train") == 9
    # the keys it replaced still load (old run directories hold them)
    legacy = load_task_config(NER, {"data.max_train_sentences": 50, "data.max_dev_sentences": 10})
    assert legacy.data.limit == {"train": 50, "dev": 10}


def test_override_syntax_errors_are_config_errors():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_overrides(["train.epochs"])
    assert parse_overrides(["a.b=[1, 2]", "c=null", "d=x=y"]) == {"a.b": [1, 2], "c": None, "d": "x=y"}


def test_every_shipped_config_loads():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        if not path.name.startswith("bilm_"):
            assert load_task_config(path).task == yaml.safe_load(path.read_text())["task"]


# -- before any work, nothing left behind ---------------------------------------------------------
@pytest.fixture
def tiny_ner(tmp_path):
    write_conll(tmp_path / "train.txt", SENTENCES * 2)
    write_conll(tmp_path / "dev.txt", SENTENCES[:3])
    from helpers import write_random_model

    options, weights = write_random_model(tmp_path / "model")
    return tmp_path, {
        "data.dir": str(tmp_path),
        "data.train": "train.txt",
        "data.dev": "dev.txt",
        "data.test": None,
        "backbone.name": None,
        "backbone.options": str(options),
        "backbone.weights": str(weights),
        "backbone.store": None,
        "train.epochs": 2,
        "train.patience": 5,
        "train.threads": 1,
        "model.hidden": 8,
        "model.words.min_count": 1,
    }


def cli_set(overrides: dict) -> list[str]:
    return [arg for key, value in overrides.items() for arg in ("--set", f"{key}={json.dumps(value)}")]


def test_config_errors_come_before_any_data_is_read_and_leave_nothing(tiny_ner, capsys, monkeypatch):
    tmp_path, overrides = tiny_ner
    import tasks.ner

    monkeypatch.setattr(tasks.ner, "read_conll", lambda *a, **k: pytest.fail("data was read"))
    out = tmp_path / "run"
    bad = {**overrides, "train.epochs": 0, "model.elmo.mix.mode": "learnt", "data.train": "missing.txt"}
    assert main(["train", str(NER), "--out", str(out), "--quiet", *cli_set(bad)]) == 2
    err = capsys.readouterr().err
    assert "train.epochs: expected a number > 0" in err and "model.elmo.mix.mode" in err
    assert not out.exists()


def test_a_missing_data_file_is_found_before_reading_and_the_fixed_rerun_starts_cleanly(tiny_ner, capsys):
    tmp_path, overrides = tiny_ner
    out = tmp_path / "run"
    assert main(["train", str(NER), "--out", str(out), "--quiet", *cli_set({**overrides, "data.dev": "nope.txt"})]) == 2
    assert "nope.txt: data file for split 'dev' not found" in capsys.readouterr().err
    assert main(["train", str(NER), "--out", str(out), "--quiet", *cli_set(overrides)]) == 0


def test_a_run_that_failed_on_its_data_does_not_block_the_corrected_rerun(tiny_ner, capsys):
    tmp_path, overrides = tiny_ner
    (tmp_path / "broken.txt").write_text("EU B-ORG\n\n")  # one column short of the configured four
    out = tmp_path / "run"
    assert (
        main(["train", str(NER), "--out", str(out), "--quiet", *cli_set({**overrides, "data.dev": "broken.txt"})]) == 2
    )
    assert "broken.txt:1" in capsys.readouterr().err
    assert main(["train", str(NER), "--out", str(out), "--quiet", *cli_set(overrides)]) == 0


def test_resume_may_extend_the_budget_but_not_change_the_model(tiny_ner):
    tmp_path, overrides = tiny_ner
    out, quiet = tmp_path / "run", lambda *_: None
    Trainer(load_task_config(NER, overrides), out, progress=False, log=quiet).run()
    lines = []
    longer = Trainer(load_task_config(NER, {**overrides, "train.epochs": 3}), out, progress=False, log=lines.append)
    assert longer.run()["epochs_run"] == 3 and "resuming after epoch 2 (best dev f1" in " ".join(lines)
    with pytest.raises(RunDirError, match=r"model.hidden differs\); only train.epochs, train.patience"):
        Trainer(load_task_config(NER, {**overrides, "model.hidden": 16}), out, progress=False, log=quiet).run()
    assert json.loads((out / "metrics.json").read_text())[-1]["epoch"] == 3  # nothing was overwritten


def test_the_cli_reports_user_errors_in_one_line_and_lets_bugs_raise(tiny_ner, capsys, monkeypatch):
    tmp_path, overrides = tiny_ner
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["train", str(NER), "--out", str(blocker / "run"), "--quiet", *cli_set(overrides)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("elmo-tasks train: error: ") and str(blocker) in err and len(err.splitlines()) == 1

    def bug(self):
        raise ValueError("a programming bug")

    monkeypatch.setattr(Trainer, "run", bug)
    with pytest.raises(ValueError, match="a programming bug"):
        main(["train", str(NER), "--out", str(tmp_path / "r"), "--quiet", *cli_set(overrides)])


def test_grid_arguments_are_checked_before_any_cell(tmp_path):
    from tasks.errors import UsageError
    from tasks.experiments.layer_grid import run_grid

    for kwargs, message in [
        ({"mixes": ["layer7"]}, "unknown mix"),
        ({"jobs": 0}, "--jobs must be >= 1"),
        ({"tasks": ["nre"]}, "unknown task"),
    ]:
        args = {"tasks": ["pos"], "seeds": 1, "backbone": {"name": "default"}, "out": tmp_path / "g", **kwargs}
        with pytest.raises(UsageError, match=message):
            run_grid(log=lambda *_: None, **args)
        assert not (tmp_path / "g").exists()
