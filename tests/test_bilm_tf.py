"""bilm-tf migration: an options JSON mapped onto the pretraining config (applied / checked / ignored),
bilm-tf's vocabulary format, --train_prefix-style shard globs, the sampled softmax, and one clear
line per problem for bad options files, vocabularies and shards."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from data.config import ConfigError
from elmo_core import ElmoFileError, batch_to_ids, load_bilm
from elmo_core.bilm_tf import BilmTfOptionsError, load_bilm_tf_config
from elmo_core.corpus import Corpus
from elmo_core.pretrain import BiLmLanguageModel, Pretrainer, log_uniform_candidates, word_id_batch
from elmo_core.vocab import Vocabulary
from tasks.cli import main

WORDS = "the a dog cat bark barks tree oak rough sharp let out of was ancient grey sat on mat".split()
VOCAB = ["</S>", "<S>", "<UNK>", *WORDS]  # the 1B Word Benchmark's order of the special tokens


def bilm_tf_options(**changes) -> dict:
    """A tiny options.json as bilm-tf's train_elmo.py writes it."""
    options = {
        "bidirectional": True,
        "char_cnn": {
            "activation": "relu",
            "embedding": {"dim": 8},
            "filters": [[1, 8], [2, 8], [3, 16]],
            "max_characters_per_token": 50,
            "n_characters": 261,
            "n_highway": 1,
        },
        "dropout": 0.1,
        "lstm": {
            "cell_clip": 3,
            "dim": 32,
            "n_layers": 2,
            "proj_clip": 3,
            "projection_dim": 16,
            "use_skip_connections": True,
        },
        "all_clip_norm_val": 10.0,
        "n_epochs": 2,
        "n_train_tokens": 400,
        "batch_size": 8,
        "n_tokens_vocab": len(VOCAB),
        "unroll_steps": 20,
        "n_negative_samples_batch": 8,
    }
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = options
        for key in parents:
            node = node[key]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return options


DELETE = object()


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]


TEMPLATES = ["the dog barks", "the cat sat on the mat", "a grey oak was rough", "the ancient tree let out a sharp bark"]


@pytest.fixture
def inputs(tmp_path: Path) -> dict:
    """options.json, vocab.txt, two training shards and a heldout file, bilm-tf style."""
    (tmp_path / "shards").mkdir()
    for i in range(2):
        (tmp_path / "shards" / f"news.en-0000{i}-of-00002").write_text("\n".join(sentences(60, i)) + "\n")
    (tmp_path / "heldout.txt").write_text("\n".join(sentences(15, 9)) + "\n")
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return {
        "options": write_options(tmp_path, bilm_tf_options()),
        "vocab": tmp_path / "vocab.txt",
        "train": str(tmp_path / "shards" / "news.en-*"),
        "heldout": tmp_path / "heldout.txt",
        "tmp": tmp_path,
    }


def write_options(tmp_path: Path, options: dict | str, name: str = "options.json") -> Path:
    path = tmp_path / name
    path.write_text(options if isinstance(options, str) else json.dumps(options, indent=1))
    return path


def cli(inputs: dict, *extra: str, options: Path | None = None, train: str | None = None, vocab=True) -> list[str]:
    argv = ["pretrain", "--bilm-tf-options", str(options or inputs["options"])]
    argv += ["--vocab", str(inputs["vocab"])] if vocab else []
    argv += ["--train", train or inputs["train"], "--heldout", str(inputs["heldout"])]
    return argv + ["--out", str(inputs["tmp"] / "run"), "--quiet", "--set", "threads=1", *extra]


def problems_of(path: Path, vocab: Path | None = None) -> list[str]:
    with pytest.raises(BilmTfOptionsError) as info:
        load_bilm_tf_config(path, vocab)
    assert str(path) in str(info.value)
    return info.value.problems


# -- the mapping --------------------------------------------------------------------------------------
def test_mapping_applies_checks_and_ignores_each_key(inputs):
    config, mapping = load_bilm_tf_config(inputs["options"], inputs["vocab"])
    assert set(mapping.applied) == {
        "lstm",
        "char_cnn",
        "n_epochs",
        "n_train_tokens",
        "batch_size",
        "unroll_steps",
        "all_clip_norm_val",
        "dropout",
        "n_negative_samples_batch",
    }
    assert set(mapping.checked) == {"n_tokens_vocab"}
    assert set(mapping.ignored) == {"unroll_steps", "bidirectional"}  # unroll_steps: as truncated BPTT
    assert "whole sentences" in mapping.ignored["unroll_steps"]
    assert config.max_tokens_seen == 2 * 400 and config.batch_tokens == 8 * 20
    assert (config.clip_norm, config.dropout) == (10.0, 0.1)
    assert (config.softmax, config.negative_samples) == ("sampled", 8)
    assert config.vocab == str(inputs["vocab"])
    assert config.model["lstm"] == bilm_tf_options()["lstm"]
    assert config.model["char_cnn"]["n_characters"] == 262  # 261 is bilm-tf's training value
    report = mapping.report()
    for line in ("applied  n_epochs x n_train_tokens", "checked  n_tokens_vocab", "ignored  bidirectional"):
        assert line in report
    assert "Adagrad" in report  # what is never taken from bilm-tf is said too


def test_official_model_options_give_the_architecture_and_our_defaults(tmp_path):
    """An official model's options file (lstm + char_cnn only) trains that architecture from scratch."""
    options = {k: v for k, v in bilm_tf_options().items() if k in ("lstm", "char_cnn")}
    options["char_cnn"]["n_characters"] = 262
    del options["char_cnn"]["n_highway"], options["lstm"]["n_layers"]
    config, mapping = load_bilm_tf_config(write_options(tmp_path, options))
    assert set(mapping.applied) == {"lstm", "char_cnn"} and not mapping.ignored
    assert config.model["char_cnn"]["n_highway"] == 0 and config.model["lstm"]["n_layers"] == 1
    assert config.softmax == "adaptive" and config.vocab is None
    assert {"n_epochs x n_train_tokens", "dropout", "all_clip_norm_val"} <= set(mapping.defaults)


def test_partial_and_switched_options(tmp_path):
    options = bilm_tf_options(sample_softmax=False, n_epochs=DELETE, unroll_steps=DELETE)
    config, mapping = load_bilm_tf_config(write_options(tmp_path, options))  # no --vocab: n_tokens_vocab caps it
    assert config.softmax == "adaptive" and "n_negative_samples_batch" in mapping.ignored
    assert "n_train_tokens" in mapping.ignored and "n_epochs" in mapping.ignored["n_train_tokens"]
    assert "batch_size" in mapping.ignored and config.batch_tokens == 2_000  # our default stands
    assert config.max_vocab == len(VOCAB) and mapping.applied["n_tokens_vocab"].startswith("max_vocab")


def test_set_overrides_apply_after_the_mapping_and_are_reported(inputs):
    config, mapping = load_bilm_tf_config(
        inputs["options"], inputs["vocab"], {"softmax": "adaptive", "max_tokens_seen": 300, "lr": 0.01}
    )
    assert (config.softmax, config.max_tokens_seen, config.lr) == ("adaptive", 300, 0.01)
    assert set(mapping.overridden) == {"softmax", "max_tokens_seen"}  # lr was not mapped
    assert "--set    max_tokens_seen replaces the mapped 800" in mapping.report()
    with pytest.raises(ConfigError, match=r"(?s)options\.json \(with --set softmax\).*softmax: expected one of"):
        load_bilm_tf_config(inputs["options"], inputs["vocab"], {"softmax": "hierarchical"})


# -- the happy path through the command line ------------------------------------------------------------
def test_cli_trains_on_shards_exports_and_the_export_loads(inputs, capsys):
    out = inputs["tmp"] / "run"
    assert (
        main(cli(inputs, "--set", "eval_every=4", "--set", "checkpoint_every=3", "--set", "buffer_sentences=50")) == 0
    )
    captured = capsys.readouterr()
    assert "applied  n_negative_samples_batch" in captured.err and "ignored  unroll_steps" in captured.err
    assert "heldout perplexity" in captured.out
    assert Vocabulary.load(out / "vocab.txt").words == VOCAB  # the given vocabulary, in its order
    config = json.loads((out / "config.json").read_text())
    assert (config["softmax"], config["negative_samples"], config["batch_tokens"]) == ("sampled", 8, 160)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["train_shards"] == ["news.en-00000-of-00002", "news.en-00001-of-00002"]
    assert state["position"]["tokens_seen"] >= 800
    assert state["position"]["buffer_start_line"] > 0  # a position inside the shard stream
    exported = json.loads((out / "options.json").read_text())
    assert exported["char_cnn"]["n_characters"] == 262 and exported["lstm"]["dim"] == 32
    bilm = load_bilm(options=out / "options.json", weights=out / "weights.hdf5")
    model = BiLmLanguageModel(bilm.options, len(VOCAB), [], 0.0, softmax="sampled", negative_samples=8)
    model.load_state_dict(state["model"])
    model.eval()
    ids = batch_to_ids([["the", "dog", "let", "out", "a", "sharp", "bark"], ["oak"]])
    with torch.no_grad():
        assert (model.bilm(ids).layers - bilm(ids).layers).abs().max() <= 1e-5
    # re-running resumes (same shards, same vocabulary through another path); a raised budget trains on
    (inputs["tmp"] / "copy.txt").write_text(inputs["vocab"].read_text())
    argv = cli(inputs, "--set", "max_tokens_seen=1200", "--set", "buffer_sentences=50")
    argv[argv.index("--vocab") + 1] = str(inputs["tmp"] / "copy.txt")
    assert main(argv) == 0, capsys.readouterr().err
    resumed = torch.load(out / "checkpoint.pt", weights_only=True)["position"]
    assert resumed["step"] > state["position"]["step"]
    assert resumed["epoch"] >= 1 or resumed["buffer_start_shard"] == 1  # read on into the second shard


def test_resume_refuses_other_shards_or_another_vocabulary(inputs, capsys):
    assert main(cli(inputs, "--set", "max_tokens_seen=200")) == 0
    (inputs["tmp"] / "shards" / "news.en-00002-of-00002").write_text("the dog sat\n")
    assert main(cli(inputs, "--set", "max_tokens_seen=400")) == 2
    err = capsys.readouterr().err
    assert "was pretrained on 2 shard(s)" in err and "3 shards" in err and "Traceback" not in err
    (inputs["tmp"] / "shards" / "news.en-00002-of-00002").unlink()
    inputs["vocab"].write_text("\n".join(VOCAB[:-1]) + "\n")
    argv = cli(inputs, "--set", "max_tokens_seen=400")
    assert main(argv) == 2  # n_tokens_vocab disagrees now; with it fixed, the content check speaks
    options = write_options(inputs["tmp"], bilm_tf_options(n_tokens_vocab=len(VOCAB) - 1), "options2.json")
    assert main(cli(inputs, "--set", "max_tokens_seen=400", options=options)) == 2
    err = capsys.readouterr().err
    assert f"{inputs['vocab']}: differs from the vocabulary the run" in err


def test_shards_are_read_in_sorted_order_and_resume_mid_shard(tmp_path):
    for name, lines in (("b.txt", ["b1", "b2", "b3"]), ("a.txt", ["a1", "a2"]), ("c.txt", ["c1"])):
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    corpus = Corpus(str(tmp_path / "*.txt"), "--train")
    assert [p.name for p in corpus.shards] == ["a.txt", "b.txt", "c.txt"]
    stream = list(corpus.iter_sentences(10))
    assert [t[0] for _, t in stream] == ["a1", "a2", "b1", "b2", "b3", "c1"]
    assert stream[3][0] == (1, 1)
    assert [t[0] for _, t in corpus.iter_sentences(10, start=(1, 2))] == ["b3", "c1"]
    assert [t[0] for _, t in corpus.iter_sentences(10, start=(0, 5))] == ["b1", "b2", "b3", "c1"]


# -- the sampled softmax --------------------------------------------------------------------------------
def test_log_uniform_candidates_are_distinct_and_favour_frequent_ids():
    torch.manual_seed(0)
    samples, tries = log_uniform_candidates(1000, 50)
    assert samples.numel() == 50 and samples.unique().numel() == 50 and tries >= 50
    assert 0 <= samples.min() and samples.max() < 1000
    assert (samples < 100).sum() > (samples >= 900).sum()  # P(k) ~ 1 / (k + 1)


def test_sampled_softmax_trains_and_its_loss_decreases(inputs):
    torch.manual_seed(0)
    config, _ = load_bilm_tf_config(inputs["options"], inputs["vocab"], {"dropout": 0.0})
    vocab = Vocabulary.load(inputs["vocab"])
    model = BiLmLanguageModel.from_config(config, len(vocab))
    assert not model.softmax.samples_whole_vocabulary  # 8 negatives of 22 words: sampled
    rng = random.Random(3)  # a corpus with something to learn: a few sentences, repeated
    train = [rng.choice(TEMPLATES).split() for _ in range(64)]
    heldout = [t.split() for t in TEMPLATES]

    def exact_nll() -> float:
        model.eval()
        with torch.no_grad():
            out = model(batch_to_ids(heldout), word_id_batch(heldout, vocab))
        model.train()
        return float((out["forward_nll"] + out["backward_nll"]) / (2 * out["targets"]))

    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    before, losses = exact_nll(), []
    for step in range(32):
        batch = train[(step % 8) * 8 : (step % 8) * 8 + 8]
        out = model(batch_to_ids(batch), word_id_batch(batch, vocab))
        loss = (out["forward_nll"] + out["backward_nll"]) / (2 * out["targets"])
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4  # the sampled training loss falls
    assert exact_nll() < before - 1.0  # and so does the exact heldout NLL (full softmax in eval mode)


def test_sampled_softmax_run_resumes_exactly(inputs):
    """Negatives come from torch's RNG, saved in the checkpoint: stopping and resuming gives the
    uninterrupted run's weights."""

    def config(budget: int):
        overrides = {"max_tokens_seen": budget, "buffer_sentences": 50, "threads": 1, "eval_every": 1000}
        return load_bilm_tf_config(inputs["options"], inputs["vocab"], overrides)[0]

    args = (inputs["train"], inputs["heldout"])
    Pretrainer(config(900), *args, inputs["tmp"] / "straight", progress=False).run()
    Pretrainer(config(400), *args, inputs["tmp"] / "resumed", progress=False).run()
    Pretrainer(config(900), *args, inputs["tmp"] / "resumed", progress=False).run()
    straight, resumed = (
        torch.load(inputs["tmp"] / d / "checkpoint.pt", weights_only=True) for d in ("straight", "resumed")
    )
    assert straight["position"]["step"] == resumed["position"]["step"]
    for key, value in straight["model"].items():
        assert torch.allclose(value, resumed["model"][key], atol=1e-6), key


# -- bad input: one clear line per problem ---------------------------------------------------------------
@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"n_epoch": 3}, "n_epoch: unknown key; did you mean n_epochs?"),
        ({"lstm.dimm": 3}, "lstm.dimm: unknown key; did you mean lstm.dim?"),
        ({"optimizer": "adam"}, "optimizer: unknown key (valid here: lstm, char_cnn, bidirectional"),
        ({"lr": 0.1}, "lr: not a bilm-tf option (it is one of elmo-tasks' pretraining keys: pass it as --set lr=...)"),
        ({"lstm.projection_dim": DELETE}, "lstm.projection_dim: missing (bilm-tf requires it)"),
        ({"char_cnn": DELETE}, "char_cnn: missing (elmo-tasks trains the character-input biLM"),
        ({"char_cnn.n_characters": 300}, "char_cnn.n_characters: expected one of 261, 262, found 300 (int)"),
        (
            {"char_cnn.max_characters_per_token": 2},
            "char_cnn.max_characters_per_token: expected an integer >= 3, found 2",
        ),
        (
            {"char_cnn.max_characters_per_token": 5, "char_cnn.filters": [[1, 8], [7, 8]]},
            "char_cnn.filters: width 7 is wider than a token (max_characters_per_token=5)",
        ),
        ({"bidirectional": False}, "bidirectional: false is not supported"),
        ({"share_embedding_softmax": True}, "share_embedding_softmax: true needs word inputs"),
        ({"dropout": 1.5}, "dropout: expected a number in [0, 1), found 1.5"),
        ({"batch_size": "128"}, "batch_size: expected an integer, found '128' (str)"),
        (
            {"n_tokens_vocab": 793471},
            "n_tokens_vocab: 793471, but the vocabulary {vocab} has 22 tokens (bilm-tf sets it to the vocabulary",
        ),
    ],
)
def test_bad_options_name_the_key_and_what_was_expected(inputs, changes, expected):
    path = write_options(inputs["tmp"], bilm_tf_options(**changes), "bad.json")
    problems = problems_of(path, inputs["vocab"])
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected.format(vocab=inputs["vocab"])), problems


def test_every_options_problem_is_reported_at_once(inputs, capsys):
    options = bilm_tf_options(**{"n_gpus": 3, "lstm.projection_dim": DELETE, "bidirectional": False})
    path = write_options(inputs["tmp"], options, "bad.json")
    assert {p.split(":")[0] for p in problems_of(path)} == {"n_gpus", "lstm.projection_dim", "bidirectional"}
    assert main(cli(inputs, options=path)) == 2
    err = capsys.readouterr().err
    assert f"{path}: 3 problems in the bilm-tf options:" in err and "Traceback" not in err
    assert not (inputs["tmp"] / "run").exists()


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"lstm": {"dim": 4,}\n}', "{path}:1: not valid JSON: Expecting property name"),
        ("[1, 2]", "{path}: a bilm-tf options file is a JSON object, found a list"),
        (b'{"lstm": "\xff"}', "{path}:1: not UTF-8 text"),
    ],
)
def test_unreadable_options_file_is_one_line(inputs, capsys, text, expected):
    path = inputs["tmp"] / "bad.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(cli(inputs, options=path)) == 2
    err = capsys.readouterr().err.strip()
    assert expected.format(path=path) in err and len(err.splitlines()) == 1


def test_options_json_given_as_config_points_to_the_flag(inputs, capsys):
    argv = cli(inputs)
    argv[1] = "--config"
    assert main(argv) == 2
    assert "looks like a bilm-tf or AllenNLP options.json; pass it with --bilm-tf-options" in capsys.readouterr().err


@pytest.mark.parametrize(
    "lines, expected",
    [
        (
            ["the", "dog", "<S>", "</S>"],
            "{path}: no <UNK> line; a vocabulary must start with the lines <S>, </S>, <UNK>",
        ),
        (["<S>", "</S>", "the", "<UNK>"], "{path}:4: <UNK> is not on one of the first three lines"),
        (["<S>", "</S>", "<UNK>", "the", "dog", "", "the"], "{path}:7: 'the' is listed again (first on line 4)"),
        (["<S>", "</S>", "<UNK>", "the 5021", "dog"], "{path}:4: 'the 5021' holds more than one token"),
        ([], "{path}: the vocabulary is empty"),
    ],
)
def test_bad_vocabulary_names_file_and_line(inputs, capsys, lines, expected):
    inputs["vocab"].write_text("\n".join(lines) + "\n")
    with pytest.raises(ElmoFileError) as info:
        Vocabulary.load(inputs["vocab"])
    assert str(info.value).startswith(expected.format(path=inputs["vocab"]))
    assert main(cli(inputs)) == 2
    err = capsys.readouterr().err
    assert expected.format(path=inputs["vocab"]) in err and "Traceback" not in err


def test_vocabulary_that_is_not_utf8_names_the_line(inputs, capsys):
    inputs["vocab"].write_bytes(b"<S>\n</S>\n<UNK>\nthe\ncaf\xe9\n")
    assert main(cli(inputs)) == 2
    assert f"{inputs['vocab']}:5:" in capsys.readouterr().err


def test_vocab_file_with_a_yaml_config(inputs, tmp_path, capsys):
    """--vocab works with --config too; a bad one is found before any corpus is read."""
    inputs["vocab"].write_text("<S>\n</S>\nthe\n")
    argv = cli(inputs)
    argv[1:3] = ["--config", str(Path(__file__).resolve().parents[1] / "configs" / "bilm_tiny.yaml")]
    argv[argv.index("--train") + 1] = str(tmp_path / "absent" / "*.txt")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no <UNK> line" in err and "absent" not in err


def test_shard_glob_matching_nothing_is_one_line(inputs, capsys):
    pattern = str(inputs["tmp"] / "shards" / "news.de-*")
    assert main(cli(inputs, train=pattern)) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # after the mapping report
    assert len(errors) == 1 and f"pretrain: error: --train '{pattern}': the pattern matches no file" in errors[0]
    (inputs["tmp"] / "dirs-1").mkdir()
    with pytest.raises(ElmoFileError, match="matches no file \\(only directories"):
        Corpus(str(inputs["tmp"] / "dirs-*"), "--train")


def test_shard_that_is_not_utf8_names_file_and_line(inputs, capsys):
    bad = inputs["tmp"] / "shards" / "news.en-00001-of-00002"
    bad.write_bytes(b"the dog sat\nthe cat sat on the mat\nthe \xff oak\n")
    assert main(cli(inputs)) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3:" in err and "Traceback" not in err


def test_empty_shard_is_named(inputs, capsys):
    empty = inputs["tmp"] / "shards" / "news.en-00001-of-00002"
    empty.write_text("")
    with pytest.raises(ElmoFileError, match=f"{empty}: the corpus is empty"):
        Pretrainer(
            load_bilm_tf_config(inputs["options"])[0], inputs["train"], inputs["heldout"], inputs["tmp"] / "r"
        ).run()
