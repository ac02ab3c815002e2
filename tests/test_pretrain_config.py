"""Pretraining configs are strict and typed like task configs (unknown keys with a suggestion, dotted
``--set`` overrides, ``${ENV}`` expansion, types and ranges, every problem at once, before any corpus
is read), and a run directory resumes under the task-training rule (budgets may change, nothing else)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
import torch

from data.config import ConfigError
from data.errors import DataError
from elmo_core import ElmoFileError
from elmo_core.options import options_from_dict
from elmo_core.pretrain import RESUMABLE_KEYS, Pretrainer, load_pretrain_config
from elmo_core.vocab import Vocabulary
from tasks.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "bilm_tiny.yaml"
WORDS = "the a dog cat bark barks tree oak rough sharp let out of was ancient grey sat on mat".split()
FAST = {"max_tokens_seen": 500, "eval_every": 5, "checkpoint_every": 2}


def write_corpus(path: Path, n: int, seed: int = 0, words: list[str] = WORDS) -> Path:
    rng = random.Random(seed)
    path.write_text("\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(n)) + "\n")
    return path


@pytest.fixture
def corpora(tmp_path: Path) -> tuple[Path, Path]:
    return write_corpus(tmp_path / "train.txt", 200), write_corpus(tmp_path / "heldout.txt", 20, seed=1)


def tiny(**overrides):
    return load_pretrain_config(TINY, {**FAST, **overrides})


def problems_of(path=TINY, overrides=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_pretrain_config(path, overrides)
    return info.value.problems


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bilm.yaml"
    path.write_text(TINY.read_text() + text)
    return path


# -- loading ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["bilm_tiny.yaml", "bilm_default.yaml", "bilm_strong.yaml"])
def test_shipped_configs_load(name):
    config = load_pretrain_config(REPO / "configs" / name)
    assert options_from_dict(config.model).lstm.n_layers == 2


def test_unknown_key_names_file_path_and_closest_key(tmp_path):
    path = config_file(tmp_path, "eval_evry: 3\n")
    path.write_text(path.read_text().replace("n_highway: 1", "n_highwy: 1"))
    with pytest.raises(ConfigError) as info:
        load_pretrain_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "eval_evry: unknown key; did you mean eval_every?" in message
    assert "model.char_cnn.n_highwy: unknown key; did you mean model.char_cnn.n_highway?" in message
    assert isinstance(info.value, DataError) and isinstance(info.value, ValueError)


def test_training_option_inside_model_points_to_the_top_level_key():
    problems = problems_of(overrides={"model.dropout": 0.2, "model.use_skip_connections": True})
    assert "model.dropout: unknown key; a training option: set dropout at the top level instead" in problems
    assert any(
        p.startswith("model.use_skip_connections: unknown key") and "model.lstm.use_skip_connections" in p
        for p in problems
    )


def test_dotted_override_reaches_model_lstm_dim():
    config = load_pretrain_config(TINY, {"model.lstm.dim": 24, "lr": 0.005})
    assert config.model["lstm"]["dim"] == 24 and config.lr == 0.005
    assert config.model["lstm"]["projection_dim"] == 16  # the rest of the section is kept
    options = options_from_dict(config.model)
    assert options.lstm.dim == 24 and options.char_cnn.filters == ((1, 8), (2, 8), (3, 16))


def test_override_source_is_named_and_a_value_cannot_become_a_section():
    expected = r"(?s)bilm_tiny.yaml \(with --set model.lstm.dimm\).*did you mean model.lstm.dim"
    with pytest.raises(ConfigError, match=expected):
        load_pretrain_config(TINY, {"model.lstm.dimm": 24})
    with pytest.raises(ConfigError, match="'batch_tokens' is a value, not a section"):
        load_pretrain_config(TINY, {"batch_tokens.x": 1})


def test_wrong_type_names_key_expected_and_found():
    problems = problems_of(overrides={"threads": "two", "model.lstm.dim": "wide", "cutoffs": 5})
    assert "threads: expected an integer, found 'two' (str)" in problems
    assert "model.lstm.dim: expected an integer, found 'wide' (str)" in problems
    assert "cutoffs: expected a list of an integer, found 5 (int)" in problems


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("lr", 0, "lr: expected a number > 0, found 0.0"),
        ("lr", -1e-3, "lr: expected a number > 0, found -0.001"),
        ("dropout", 1.0, "dropout: expected a number in [0, 1), found 1.0"),
        ("dropout", -0.1, "dropout: expected a number in [0, 1), found -0.1"),
        ("batch_tokens", 0, "batch_tokens: expected a number > 0, found 0"),
        ("max_minutes", 0, "max_minutes: expected a number > 0, found 0.0"),
        ("max_tokens_seen", -5, "max_tokens_seen: expected a number > 0, found -5"),
        ("clip_norm", 0, "clip_norm: expected a number > 0, found 0.0"),
        ("max_vocab", 3, "max_vocab: expected an integer >= 4, found 3"),
        ("seed", -1, "seed: expected an integer in [0, 2**63), found -1"),
        ("cutoffs", [1000, 200], "cutoffs: expected increasing integers > 0, found [1000, 200]"),
        ("model.lstm.n_layers", 0, "model.lstm.n_layers: expected a number > 0, found 0"),
        ("model.char_cnn.n_characters", 300, "model.char_cnn.n_characters: expected one of 261, 262, found 300 (int)"),
        (
            "model.char_cnn.filters",
            [[1, 8], [0, 8]],
            "model.char_cnn.filters: expected [width, n_filters] pairs of integers > 0, found [0, 8]",
        ),
        ("model.char_cnn.filters", [], "model.char_cnn.filters: must be a non-empty list of [width, n_filters]"),
    ],
)
def test_out_of_range_values_are_refused(key, value, expected):
    assert problems_of(overrides={key: value}) == [expected]


def test_null_budget_is_allowed():
    assert load_pretrain_config(TINY, {"max_minutes": None}).max_minutes is None


def test_every_problem_is_reported_at_once(tmp_path):
    path = config_file(tmp_path, "lr: 0\nbatch_tokens: many\nwarmup: 3\n")
    problems = problems_of(path, {"dropout": 2, "model.lstm.projection_dim": -1, "model.char_cnn.activation": "gelu"})
    assert len(problems) == 6, problems
    assert {p.split(":")[0] for p in problems} == {
        "lr",
        "batch_tokens",
        "warmup",
        "dropout",
        "model.lstm.projection_dim",
        "model.char_cnn.activation",
    }


def test_missing_model_section_and_missing_model_fields(tmp_path):
    path = tmp_path / "no_model.yaml"
    path.write_text("lr: 0.01\n")
    assert [p.split(";")[0] for p in problems_of(path)] == ["model: missing"]
    path.write_text(TINY.read_text().replace("    n_highway: 1\n", ""))
    assert problems_of(path) == ["model.char_cnn.n_highway: missing (options.json field)"]


def test_env_placeholders_are_expanded(tmp_path, monkeypatch):
    text = TINY.read_text().replace("{dim: 32,", "{dim: '${PT_DIM:-40}',")
    text = text.replace("threads: 1", "threads: ${PT_THREADS:-3}")
    path = tmp_path / "env.yaml"
    path.write_text(text + "lr: ${PT_LR}\n")
    monkeypatch.delenv("PT_DIM", raising=False)
    monkeypatch.delenv("PT_THREADS", raising=False)
    monkeypatch.setenv("PT_LR", "0.02")
    config = load_pretrain_config(path)
    assert (config.model["lstm"]["dim"], config.threads, config.lr) == (40, 3, 0.02)
    monkeypatch.setenv("PT_DIM", "48")
    monkeypatch.setenv("PT_LR", "-1")
    with pytest.raises(ConfigError, match="lr: expected a number > 0, found -1.0"):
        load_pretrain_config(path)
    monkeypatch.setenv("PT_LR", "0.02")
    assert load_pretrain_config(path).model["lstm"]["dim"] == 48


# -- the CLI: a config that fails validation leaves nothing behind ------------------------------------
def test_failed_validation_leaves_nothing_behind_and_reads_no_corpus(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "pretrain",
            "--config",
            str(TINY),
            "--train",
            str(tmp_path / "absent_train.txt"),
            "--heldout",
            str(tmp_path / "absent_heldout.txt"),
            "--out",
            str(out),
            "--quiet",
            "--set",
            "model.lstm.dimm=64",
            "--set",
            "lr=0",
            "--set",
            "max_tokens_seen=500",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "invalid config (2 problems)" in err and "did you mean model.lstm.dim?" in err and "lr: expected" in err
    assert "absent_train" not in err  # the corpus was never looked at
    assert not out.exists()


def test_cli_set_reaches_the_trained_model(tmp_path, corpora, capsys):
    train, heldout = corpora
    out = tmp_path / "run"
    code = main(
        [
            "pretrain",
            "--config",
            str(TINY),
            "--train",
            str(train),
            "--heldout",
            str(heldout),
            "--out",
            str(out),
            "--quiet",
            "--set",
            "model.lstm.dim=24",
            "--set",
            "max_tokens_seen=300",
        ]
    )
    assert code == 0, capsys.readouterr().err
    from elmo_core.options import load_options

    assert load_options(out / "options.json").lstm.dim == 24


# -- resume ---------------------------------------------------------------------------------------------
def log_steps(out: Path) -> list[int]:
    with (out / "log.csv").open(newline="") as f:
        return [int(row[0]) for row in list(csv.reader(f))[1:]]


def test_resume_with_a_raised_budget_continues(tmp_path, corpora):
    train, heldout = corpora
    out = tmp_path / "run"
    Pretrainer(tiny(), train, heldout, out, progress=False).run()
    first = torch.load(out / "checkpoint.pt", weights_only=True)["position"]
    assert first["tokens_seen"] >= 500
    # budgets and cadences may change; the run continues from its checkpoint
    result = Pretrainer(
        tiny(max_tokens_seen=1200, eval_every=3, checkpoint_every=5, threads=2, max_minutes=30),
        train,
        heldout,
        out,
        progress=False,
    ).run()
    final = torch.load(out / "checkpoint.pt", weights_only=True)["position"]
    assert final["step"] > first["step"] and final["tokens_seen"] >= 1200 and result["step"] == final["step"]
    steps = log_steps(out)
    assert steps == sorted(set(steps))  # one log, no step logged twice
    assert set(RESUMABLE_KEYS) == {
        "max_tokens_seen",
        "max_minutes",
        "eval_every",
        "checkpoint_every",
        "threads",
        "device",
        "strict",
        "lr_decay_tokens",
        "lr_final_ratio",
    }


def test_rerunning_a_finished_run_trains_no_further(tmp_path, corpora):
    train, heldout = corpora
    out = tmp_path / "run"
    first = Pretrainer(tiny(), train, heldout, out, progress=False).run()
    again = Pretrainer(tiny(), train, heldout, out, progress=False).run()
    assert again["step"] == first["step"] and again["mean_ppl"] == pytest.approx(first["mean_ppl"])


@pytest.mark.parametrize(
    "changed, named",
    [
        ({"model.lstm.dim": 24}, "model.lstm.dim"),
        ({"lr": 0.5, "heldout_sentences": 10}, "heldout_sentences, lr"),
        ({"model.char_cnn.filters": [[1, 8], [2, 8]], "seed": 5}, "model.char_cnn.filters, seed"),
    ],
)
def test_resume_with_a_changed_key_is_refused_and_nothing_is_overwritten(tmp_path, corpora, changed, named):
    train, heldout = corpora
    out = tmp_path / "run"
    Pretrainer(tiny(), train, heldout, out, progress=False).run()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ElmoFileError) as info:
        Pretrainer(tiny(max_tokens_seen=2000, **changed), train, heldout, out, progress=False).run()
    message = str(info.value)
    assert f"differs in: {named})" in message and "nothing was overwritten" in message
    assert str(out / "checkpoint.pt") in message and "max_tokens_seen" in message
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_run_dir_without_a_checkpoint_starts_again(tmp_path, corpora):
    """A run that stopped before its first checkpoint (here: a stale vocabulary and log from another
    corpus) does not block the corrected rerun, and leaves nothing in it."""
    train, heldout = corpora
    out = tmp_path / "run"
    out.mkdir()
    Vocabulary.build([["zebra", "yak"]], min_count=1).save(out / "vocab.txt")
    (out / "log.csv").write_text("step,tokens_seen\n999,1\n")
    (out / "config.json").write_text('{"lr": 9}')
    Pretrainer(tiny(), train, heldout, out, progress=False).run()
    vocab = Vocabulary.load(out / "vocab.txt")
    assert "dog" in vocab.words and "zebra" not in vocab.words
    assert 999 not in log_steps(out) and log_steps(out)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, corpora, capsys):
    train, heldout = corpora
    out = tmp_path / "run"
    Pretrainer(tiny(), train, heldout, out, progress=False).run()
    checkpoint = out / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:200])  # truncated
    with pytest.raises(ElmoFileError, match=r"checkpoint\.pt: cannot be read as a pretraining checkpoint"):
        Pretrainer(tiny(), train, heldout, out, progress=False).run()
    torch.save({"model": {}}, checkpoint)  # readable, but not ours
    with pytest.raises(ElmoFileError, match=r"checkpoint\.pt: not a pretraining checkpoint"):
        Pretrainer(tiny(), train, heldout, out, progress=False).run()
    code = main(
        [
            "pretrain",
            "--config",
            str(TINY),
            "--train",
            str(train),
            "--heldout",
            str(heldout),
            "--out",
            str(out),
            "--quiet",
            "--set",
            "max_tokens_seen=500",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and str(checkpoint) in err and "Traceback" not in err
