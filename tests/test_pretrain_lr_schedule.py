"""The pretraining learning-rate schedule: constant, linear or cosine decay over tokens seen, a
function of the position alone, so a stopped and resumed run takes the uninterrupted run's steps."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch

from data.config import ConfigError
from elmo_core import ElmoFileError
from elmo_core.pretrain import Pretrainer, learning_rate, load_pretrain_config

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "bilm_tiny.yaml"
WORDS = "the a dog cat bark barks tree oak rough sharp let out of was ancient grey sat on mat".split()
CADENCE = {"eval_every": 5, "checkpoint_every": 2}


def write_corpus(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)) + "\n")
    return path


@pytest.fixture
def corpora(tmp_path: Path) -> tuple[Path, Path]:
    return write_corpus(tmp_path / "train.txt", 200, seed=0), write_corpus(tmp_path / "heldout.txt", 20, seed=1)


def tiny(**overrides):
    return load_pretrain_config(TINY, {**CADENCE, **overrides})


# -- the function -----------------------------------------------------------------------------------
def test_constant_is_lr_throughout():
    cfg = tiny(lr=0.01, max_tokens_seen=1000)
    assert [learning_rate(cfg, t) for t in (0, 500, 1000, 5000)] == [0.01] * 4


def test_linear_goes_from_lr_to_the_final_ratio_then_stays():
    cfg = tiny(lr=0.01, lr_schedule="linear", lr_final_ratio=0.2, max_tokens_seen=1000)
    assert learning_rate(cfg, 0) == pytest.approx(0.01)
    assert learning_rate(cfg, 250) == pytest.approx(0.01 * (0.2 + 0.8 * 0.75))
    assert learning_rate(cfg, 1000) == pytest.approx(0.002)
    assert learning_rate(cfg, 3000) == pytest.approx(0.002)


def test_cosine_is_halfway_at_half_the_horizon_and_flat_at_its_ends():
    cfg = tiny(lr=0.01, lr_schedule="cosine", lr_final_ratio=0.0, max_tokens_seen=1000)
    assert learning_rate(cfg, 0) == pytest.approx(0.01)
    assert learning_rate(cfg, 500) == pytest.approx(0.005)
    assert learning_rate(cfg, 100) == pytest.approx(0.005 * (1 + math.cos(math.pi * 0.1)))
    assert learning_rate(cfg, 1000) == pytest.approx(0.0, abs=1e-15)
    assert learning_rate(cfg, 10) > learning_rate(cfg, 20) > learning_rate(cfg, 990)


def test_lr_decay_tokens_pins_the_horizon_independently_of_the_budget():
    pinned = [tiny(lr=1.0, lr_schedule="linear", lr_decay_tokens=400, max_tokens_seen=m) for m in (500, 5000)]
    assert learning_rate(pinned[0], 200) == learning_rate(pinned[1], 200) == pytest.approx(0.1 + 0.9 * 0.5)
    follows = [tiny(lr=1.0, lr_schedule="linear", max_tokens_seen=m) for m in (500, 5000)]
    assert learning_rate(follows[0], 200) < learning_rate(follows[1], 200)


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"lr_schedule": "step"}, "lr_schedule"),
        ({"lr_final_ratio": 1.5}, "lr_final_ratio"),
        ({"lr_decay_tokens": 0}, "lr_decay_tokens"),
    ],
)
def test_bad_schedule_keys_are_refused_by_name(overrides, fragment):
    with pytest.raises(ConfigError) as info:
        tiny(**overrides)
    assert any(fragment in problem for problem in info.value.problems)


# -- in a run -------------------------------------------------------------------------------------
def final_state(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", weights_only=True)


def test_a_decayed_run_ends_at_its_scheduled_rate_and_trains_differently(tmp_path, corpora):
    train, heldout = corpora
    decayed = Pretrainer(
        tiny(max_tokens_seen=800, lr_schedule="linear", lr_final_ratio=0.25),
        train,
        heldout,
        tmp_path / "d",
        progress=False,
    ).run()
    constant = Pretrainer(tiny(max_tokens_seen=800), train, heldout, tmp_path / "c", progress=False).run()
    cfg = tiny()
    assert constant["lr"] == cfg.lr
    # the last step's rate belongs to a position within one batch of the end
    started_at = 800 * (1 - (decayed["lr"] / cfg.lr - 0.25) / 0.75)
    assert decayed["tokens_seen"] - cfg.batch_tokens <= started_at < decayed["tokens_seen"]
    assert cfg.lr * 0.25 <= decayed["lr"] < cfg.lr
    assert final_state(tmp_path / "d")["optimizer"]["param_groups"][0]["lr"] == decayed["lr"]
    d, c = final_state(tmp_path / "d")["model"], final_state(tmp_path / "c")["model"]
    assert any(not torch.equal(d[k], c[k]) for k in d)


def test_a_stopped_and_resumed_run_equals_the_uninterrupted_one(tmp_path, corpora):
    train, heldout = corpora
    schedule = {"lr_schedule": "cosine", "lr_decay_tokens": 1200, "lr_final_ratio": 0.1}
    whole = Pretrainer(tiny(max_tokens_seen=1200, **schedule), train, heldout, tmp_path / "whole", progress=False).run()
    Pretrainer(tiny(max_tokens_seen=500, **schedule), train, heldout, tmp_path / "parts", progress=False).run()
    resumed = Pretrainer(
        tiny(max_tokens_seen=1200, **schedule), train, heldout, tmp_path / "parts", progress=False
    ).run()
    assert resumed["step"] == whole["step"] and resumed["lr"] == whole["lr"]
    a, b = final_state(tmp_path / "whole")["model"], final_state(tmp_path / "parts")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_changing_the_schedule_on_resume_is_refused(tmp_path, corpora):
    train, heldout = corpora
    out = tmp_path / "run"
    Pretrainer(tiny(max_tokens_seen=300), train, heldout, out, progress=False).run()
    with pytest.raises(ElmoFileError, match=r"differs in: lr_schedule\)"):
        Pretrainer(tiny(max_tokens_seen=600, lr_schedule="linear"), train, heldout, out, progress=False).run()


def test_re_planning_the_decay_on_resume_is_announced_and_followed(tmp_path, corpora):
    train, heldout = corpora
    out, said = tmp_path / "run", []
    planned = {"lr_schedule": "cosine", "lr_final_ratio": 0.1}
    Pretrainer(tiny(max_tokens_seen=500, lr_decay_tokens=2000, **planned), train, heldout, out, progress=False).run()
    stopped_at = final_state(out)["position"]["tokens_seen"]
    shorter = tiny(max_tokens_seen=900, lr_decay_tokens=900, **planned)
    resumed = Pretrainer(shorter, train, heldout, out, progress=False, log=said.append).run()
    was = learning_rate(tiny(max_tokens_seen=500, lr_decay_tokens=2000, **planned), stopped_at)
    now = learning_rate(shorter, stopped_at)
    assert now < was
    [line] = [m for m in said if "re-planned" in m]
    assert f"{stopped_at:,} tokens" in line and f"{was:.3g}" in line and f"{now:.3g}" in line
    assert "lr_decay_tokens: 2000 -> 900" in line
    # the new schedule is the one followed: below what the old one gives even at the run's end
    assert resumed["lr"] < learning_rate(
        tiny(max_tokens_seen=500, lr_decay_tokens=2000, **planned), resumed["tokens_seen"]
    )
    assert resumed["lr"] == final_state(out)["optimizer"]["param_groups"][0]["lr"]
    assert shorter.lr * 0.1 <= resumed["lr"] <= learning_rate(shorter, stopped_at)


def test_an_unchanged_schedule_resumes_silently(tmp_path, corpora):
    train, heldout = corpora
    out, said = tmp_path / "run", []
    cfg = {"lr_schedule": "cosine", "lr_decay_tokens": 900}
    Pretrainer(tiny(max_tokens_seen=300, **cfg), train, heldout, out, progress=False).run()
    Pretrainer(tiny(max_tokens_seen=600, **cfg), train, heldout, out, progress=False, log=said.append).run()
    assert not [m for m in said if "re-planned" in m]
