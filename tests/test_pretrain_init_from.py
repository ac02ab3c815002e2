"""``init_from`` / ``--init-from``: pretraining continues an existing biLM (bilm-tf's restart.py,
adapting a model to a domain's text): its weights start the run, the softmax starts fresh, the
model section is taken from it or must equal it, and a bad reference is named before training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from data.config import ConfigError
from elmo_core import load_bilm
from elmo_core.pretrain import Pretrainer, load_pretrain_config, pretrain_config_from_tree
from elmo_core.random_model import write_random_model
from tasks.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "bilm_tiny.yaml"
WORDS = "the a dog cat bark barks tree oak rough sharp let out of was ancient river bank money".split()


def corpus(path: Path, n: int, seed: int) -> Path:
    g = torch.Generator().manual_seed(seed)
    lines = [" ".join(WORDS[i] for i in torch.randint(len(WORDS), (3 + k % 7,), generator=g)) for k in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def parameters(folder: Path) -> dict[str, np.ndarray]:
    bilm = load_bilm(options=folder / "options.json", weights=folder / "weights.hdf5")
    return {name: p.detach().numpy().copy() for name, p in bilm.named_parameters()}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A tiny biLM trained for a few steps: the model the tests continue."""
    root = tmp_path_factory.mktemp("source")
    cfg = load_pretrain_config(TINY, {"max_tokens_seen": 10_000, "eval_every": 50, "lr": 0.01})
    Pretrainer(cfg, corpus(root / "t.txt", 200, 1), corpus(root / "h.txt", 20, 2), root / "run", progress=False).run()
    return root / "run"


def test_the_continued_run_starts_from_the_models_weights(source, tmp_path):
    # lr so small that the exported weights are the starting point to ~1e-9; another seed than the
    # source's, so a random start would differ from it.
    tree = {"init_from": str(source), "lr": 1e-9, "max_tokens_seen": 300, "threads": 1, "batch_tokens": 200, "seed": 99}
    cfg = pretrain_config_from_tree(tree)
    assert cfg.model == json.loads((source / "options.json").read_text())  # taken from the model
    train, heldout = corpus(tmp_path / "domain.txt", 100, 3), corpus(tmp_path / "h.txt", 10, 4)
    lines: list[str] = []
    Pretrainer(cfg, train, heldout, tmp_path / "run", progress=False, log=lines.append).run()
    before, after = parameters(source), parameters(tmp_path / "run")
    assert all(np.abs(after[k] - before[k]).max() < 1e-6 for k in before)
    assert any(f"continuing {source}" in line and "the softmax starts fresh" in line for line in lines)
    # Without init_from the same config starts from its seed's random weights: far from the model's.
    fresh = pretrain_config_from_tree({**tree, "init_from": None, "model": cfg.model})
    Pretrainer(fresh, train, heldout, tmp_path / "fresh", progress=False, log=lambda *_: None).run()
    random_start = parameters(tmp_path / "fresh")
    assert max(np.abs(random_start[k] - before[k]).max() for k in before) > 0.01


def test_continuing_lowers_the_heldout_perplexity_of_a_fresh_start(source, tmp_path):
    """The continued biLM keeps what it learned: after the same few steps on new text its heldout
    perplexity is below a fresh model's (the softmax is new in both)."""
    train, heldout = corpus(tmp_path / "domain.txt", 300, 5), corpus(tmp_path / "h.txt", 30, 6)
    common = {"max_tokens_seen": 800, "eval_every": 100, "threads": 1, "lr": 0.003}
    model = json.loads((source / "options.json").read_text())
    results = {}
    for name, extra in (("continued", {"init_from": str(source)}), ("fresh", {"model": model})):
        cfg = pretrain_config_from_tree({**common, **extra})
        results[name] = Pretrainer(cfg, train, heldout, tmp_path / name, progress=False, log=lambda *_: None).run()
    assert results["continued"]["mean_ppl"] < results["fresh"]["mean_ppl"]


def test_the_softmax_is_restored_when_the_vocabulary_is_the_same(source, tmp_path):
    """A run folder exports softmax.pt beside the weights: continuing it with the same vocabulary
    starts from the source's perplexity; without softmax.pt the softmax starts from scratch."""
    import shutil

    heldout = source.parent / "h.txt"
    source_ppl = json.loads((source / "result.json").read_text())["mean_ppl"]
    base = {"max_tokens_seen": 200, "threads": 1, "batch_tokens": 200, "lr": 1e-9, "vocab": str(source / "vocab.txt")}
    lines: list[str] = []
    cfg = pretrain_config_from_tree({**base, "init_from": str(source)})
    kept = Pretrainer(cfg, source.parent / "t.txt", heldout, tmp_path / "kept", progress=False, log=lines.append).run()
    assert kept["mean_ppl"] == pytest.approx(source_ppl, rel=1e-4)
    assert any("so does its softmax" in line for line in lines)
    bare = tmp_path / "bare"  # the official layout only, as a shipped or official model comes
    bare.mkdir()
    for name in ("options.json", "weights.hdf5", "vocab.txt"):
        shutil.copy(source / name, bare / name)
    cfg = pretrain_config_from_tree({**base, "init_from": str(bare)})
    fresh = Pretrainer(
        cfg, source.parent / "t.txt", heldout, tmp_path / "fresh", progress=False, log=lines.append
    ).run()
    assert fresh["mean_ppl"] > 1.2 * source_ppl
    assert any("the softmax starts fresh: no softmax.pt + vocab.txt beside the weights" in line for line in lines)


def test_during_the_softmax_warm_up_only_the_softmax_learns(source, tmp_path):
    train, heldout = corpus(tmp_path / "domain.txt", 100, 10), corpus(tmp_path / "h.txt", 10, 11)
    base = {"init_from": str(source), "max_tokens_seen": 600, "threads": 1, "batch_tokens": 200, "lr": 0.01}
    lines: list[str] = []
    long = {"max_tokens_seen": 8000, "softmax_warmup_tokens": 10_000}  # a warm-up longer than the run
    cfg = pretrain_config_from_tree({**base, **long})
    warm = Pretrainer(cfg, train, heldout, tmp_path / "warm", progress=False, log=lines.append).run()
    before = parameters(source)
    assert all(np.array_equal(parameters(tmp_path / "warm")[k], before[k]) for k in before)
    assert not any("softmax warm-up done" in line for line in lines)
    # ... while the softmax did learn: below the same run's without learning (lr 1e-9).
    cfg = pretrain_config_from_tree({**base, **long, "lr": 1e-9})
    still = Pretrainer(cfg, train, heldout, tmp_path / "still", progress=False, log=lines.append).run()
    assert warm["mean_ppl"] < 0.9 * still["mean_ppl"]
    cfg = pretrain_config_from_tree({**base, "softmax_warmup_tokens": 300})
    Pretrainer(cfg, train, heldout, tmp_path / "then", progress=False, log=lines.append).run()
    assert max(np.abs(parameters(tmp_path / "then")[k] - before[k]).max() for k in before) > 1e-3
    assert any("softmax warm-up done after" in line and "the whole biLM learns from here" in line for line in lines)


def test_a_model_section_that_differs_is_named_key_by_key(source):
    tree = {**load_pretrain_config(TINY).__dict__, "init_from": str(source)}
    tree["model"] = json.loads(json.dumps(tree["model"]))
    tree["model"]["lstm"]["dim"] = 64
    with pytest.raises(ConfigError) as caught:
        pretrain_config_from_tree(tree, "cfg.yaml")
    assert f"model.lstm.dim: 64 here, but {source} has 32; leave `model` out" in str(caught.value)
    tree["model"]["lstm"]["dim"] = 32  # equal options: accepted
    assert pretrain_config_from_tree(tree).init_from == str(source)


def test_a_bad_reference_is_named_before_any_corpus_is_read(tmp_path):
    with pytest.raises(ConfigError, match=r"init_from: 'nowhere' is neither a folder with options.json"):
        pretrain_config_from_tree({"init_from": "nowhere"})
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "options.json").write_text("{}")
    with pytest.raises(
        ConfigError, match=r"init_from: .*half: expected options.json and weights.hdf5 there, missing weights.hdf5"
    ):
        pretrain_config_from_tree({"init_from": str(tmp_path / "half")})
    with pytest.raises(ConfigError, match=r"init_from: unknown release 'default@v99'"):
        pretrain_config_from_tree({"init_from": "default@v99"})


def test_the_command_continues_a_named_model_without_a_config(tmp_path, monkeypatch, capsys):
    import elmo_core.models

    write_random_model(tmp_path / "shipped" / "default", seed=7)
    monkeypatch.setattr(elmo_core.models, "PACKAGED_DIR", tmp_path / "shipped")
    train, heldout = corpus(tmp_path / "domain.txt", 60, 8), corpus(tmp_path / "h.txt", 10, 9)
    args = ["pretrain", "--init-from", "default", "--train", str(train), "--heldout", str(heldout)]
    args += ["--out", str(tmp_path / "run"), "--quiet", "--set", "max_tokens_seen=200", "--set", "threads=1"]
    args += ["--set", "batch_tokens=200"]
    assert main(args) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["init_from"] == "default"
    assert saved["model"] == json.loads((tmp_path / "shipped" / "default" / "options.json").read_text())
    assert "exported" in capsys.readouterr().out
