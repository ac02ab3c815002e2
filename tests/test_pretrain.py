"""biLM pretraining: export round trip, resume after kill -9, bad input."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from elmo_core import ElmoFileError, batch_to_ids, load_bilm
from elmo_core.pretrain import Pretrainer, load_pretrain_config
from elmo_core.vocab import Vocabulary

REPO = Path(__file__).resolve().parents[1]
WORDS = "the a dog cat bark barks tree oak rough sharp let out of was ancient grey sat on mat".split()


def write_corpus(path: Path, n: int, seed: int = 0, length: tuple[int, int] = (3, 12)) -> Path:
    import random

    rng = random.Random(seed)
    path.write_text(
        "\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(*length))) for _ in range(n)) + "\n"
    )
    return path


def tiny_config(**overrides):
    return load_pretrain_config(
        REPO / "configs" / "bilm_tiny.yaml",
        {"max_tokens_seen": 3000, "eval_every": 5, "checkpoint_every": 2, **overrides},
    )


def test_exported_files_reproduce_the_training_model(tmp_path):
    train, heldout = write_corpus(tmp_path / "train.txt", 400), write_corpus(tmp_path / "heldout.txt", 30, seed=1)
    trainer = Pretrainer(tiny_config(), train, heldout, tmp_path / "run", progress=False)
    result = trainer.run()
    first_eval = float((tmp_path / "run" / "log.csv").read_text().splitlines()[1].split(",")[-1])
    assert result["mean_ppl"] < first_eval  # it learns
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    from elmo_core.options import options_from_dict
    from elmo_core.pretrain import BiLmLanguageModel

    model = BiLmLanguageModel(
        options_from_dict(tiny_config().model),
        len(Vocabulary.load(tmp_path / "run" / "vocab.txt")),
        tiny_config().cutoffs,
        0.0,
    )
    model.load_state_dict(state)
    model.eval()
    loaded = load_bilm(options=tmp_path / "run" / "options.json", weights=tmp_path / "run" / "weights.hdf5")
    ids = batch_to_ids([["the", "dog", "let", "out", "a", "sharp", "bark"], ["oak"]])
    with torch.no_grad():
        assert (model.bilm(ids).layers - loaded(ids).layers).abs().max() <= 1e-5
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,tokens_seen") and len(log) >= 2


def test_resume_after_kill_9_continues_where_it_stopped(tmp_path):
    train, heldout = write_corpus(tmp_path / "train.txt", 3000), write_corpus(tmp_path / "heldout.txt", 30, seed=1)
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "tasks.cli",
        "pretrain",
        "--config",
        str(REPO / "configs" / "bilm_tiny.yaml"),
        "--train",
        str(train),
        "--heldout",
        str(heldout),
        "--out",
        str(out),
        "--quiet",
        "--set",
        "max_tokens_seen=200000",
        "--set",
        "checkpoint_every=2",
        "--set",
        "eval_every=1000",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(cmd, cwd=REPO, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (out / "checkpoint.pt").is_file():
            time.sleep(1.0)
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    step_before = saved["position"]["step"]
    assert step_before >= 2 and not (out / "weights.hdf5").exists()
    budget = saved["position"]["tokens_seen"] + 1500
    resumed = subprocess.run(
        cmd[:-6] + ["--set", f"max_tokens_seen={budget}", "--set", "checkpoint_every=2", "--set", "eval_every=1000"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    final = torch.load(out / "checkpoint.pt", weights_only=True)["position"]
    assert final["step"] > step_before and final["tokens_seen"] >= budget
    assert (out / "weights.hdf5").is_file()


def test_empty_corpus_is_rejected(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    heldout = write_corpus(tmp_path / "heldout.txt", 5)
    with pytest.raises(ElmoFileError, match="the corpus is empty"):
        Pretrainer(tiny_config(), tmp_path / "empty.txt", heldout, tmp_path / "run", progress=False).run()
    assert not (tmp_path / "run").exists()


def test_corpus_of_only_overlong_sentences_is_rejected(tmp_path):
    train = write_corpus(tmp_path / "long.txt", 20, length=(80, 90))
    heldout = write_corpus(tmp_path / "heldout.txt", 5)
    with pytest.raises(ElmoFileError, match="longer than max_sentence_tokens=60"):
        Pretrainer(tiny_config(max_sentence_tokens=60), train, heldout, tmp_path / "run", progress=False).run()


def test_vocabulary_without_special_tokens_is_rejected(tmp_path):
    (tmp_path / "vocab.txt").write_text("the\ndog\n<S>\n")
    with pytest.raises(ElmoFileError, match="must start with the lines <S>, </S>, <UNK>"):
        Vocabulary.load(tmp_path / "vocab.txt")


def test_checkpoint_from_a_different_config_is_refused_and_kept(tmp_path):
    train, heldout = write_corpus(tmp_path / "train.txt", 200), write_corpus(tmp_path / "heldout.txt", 20, seed=1)
    Pretrainer(tiny_config(max_tokens_seen=500), train, heldout, tmp_path / "run", progress=False).run()
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(ElmoFileError, match="different config.*differs in: lr"):
        Pretrainer(tiny_config(lr=0.5), train, heldout, tmp_path / "run", progress=False).run()
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


def test_vocabulary_order_follows_bilm_tf():
    vocab = Vocabulary.build([["b", "a", "b", "c", "c", "c"], ["a", "<S>"]], min_count=2)
    assert vocab.words == ["<S>", "</S>", "<UNK>", "c", "a", "b"]
    assert vocab.id("zzz") == vocab.unk


def test_bf16_training_learns_on_cpus_with_bf16_units(tmp_path, monkeypatch):
    monkeypatch.setattr("elmo_core.loading.bf16_matrix_units", lambda: "AVX512-BF16")
    train, heldout = write_corpus(tmp_path / "train.txt", 400), write_corpus(tmp_path / "heldout.txt", 30, seed=1)
    fp32 = Pretrainer(tiny_config(), train, heldout, tmp_path / "fp32", progress=False).run()
    bf16 = Pretrainer(tiny_config(precision="bf16"), train, heldout, tmp_path / "bf16", progress=False).run()
    first_eval = float((tmp_path / "bf16" / "log.csv").read_text().splitlines()[1].split(",")[-1])
    assert bf16["precision"] == "bf16" and fp32["precision"] == "fp32"
    assert bf16["mean_ppl"] < first_eval  # it learns
    assert bf16["mean_ppl"] != fp32["mean_ppl"]  # other numerics really ran
    assert abs(bf16["mean_ppl"] - fp32["mean_ppl"]) < 0.2 * fp32["mean_ppl"]
    # the export is an ordinary fp32 model
    loaded = load_bilm(options=tmp_path / "bf16" / "options.json", weights=tmp_path / "bf16" / "weights.hdf5")
    assert loaded.char_cnn.projection.weight.dtype == torch.float32


def test_bf16_training_falls_back_to_fp32_without_bf16_units(tmp_path, monkeypatch):
    monkeypatch.setattr("elmo_core.loading.bf16_matrix_units", lambda: None)
    train, heldout = write_corpus(tmp_path / "train.txt", 100), write_corpus(tmp_path / "heldout.txt", 10, seed=1)
    with pytest.warns(UserWarning, match="no bf16 matrix units"):
        result = Pretrainer(
            tiny_config(precision="bf16", max_tokens_seen=500), train, heldout, tmp_path / "run", progress=False
        ).run()
    assert result["precision"] == "fp32"
