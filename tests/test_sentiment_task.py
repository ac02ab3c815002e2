"""Sentiment task end to end on tiny files: SST trees and TSV, phrases, SST-2, run directory, CLI, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from data.errors import DataFormatError
from helpers import NEGATIVE, NEUTRAL, POSITIVE, REPO, quiet, shared_path, write_random_model, write_trees
from tasks.cli import main
from tasks.registry import build_task, load_task_config
from tasks.sentiment import unescape_ptb
from tasks.trainer import Trainer

torch.set_num_threads(1)


@pytest.fixture
def sst_dir(tmp_path: Path) -> Path:
    rows = (
        [(w, 4) for w in POSITIVE[:2]]
        + [(w, 3) for w in POSITIVE[2:]]
        + [(w, 0) for w in NEGATIVE[:2]]
        + [(w, 1) for w in NEGATIVE[2:]]
        + [(w, 2) for w in NEUTRAL]
    )
    write_trees(tmp_path / "train.txt", rows * 2)
    write_trees(tmp_path / "dev.txt", rows[::2])
    write_trees(tmp_path / "test.txt", rows[1::2])
    return tmp_path


def sst_config(data_dir: Path, model_dir: Path, config: str = "sst5.yaml", **extra) -> dict:
    options, weights = write_random_model(model_dir)
    overrides = {
        "data.dir": str(data_dir),
        "backbone.name": None,
        "backbone.options": str(options),
        "backbone.weights": str(weights),
        "train.epochs": 3,
        "train.patience": 5,
        "train.threads": 1,
        "train.batch_size": 4,
        "model.hidden": 8,
        "model.mlp": [8],
        **extra,
    }
    return load_task_config(REPO / "configs" / config, overrides)


def test_training_on_sst_trees_writes_a_complete_run_directory(sst_dir, tmp_path):
    results = Trainer(sst_config(sst_dir, tmp_path / "model"), tmp_path / "run", progress=False, log=quiet).run()
    run = tmp_path / "run"
    for name in (
        "config.yaml",
        "vocab.json",
        "best.pt",
        "last.pt",
        "metrics.csv",
        "results.json",
        "dev.predictions.txt",
        "dev.report.txt",
        "test.confusion.png",
        "dev.confusion.png",
    ):
        assert (run / name).is_file(), name
    assert (run / "test.confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = json.loads((run / "metrics.json").read_text())
    assert len(history) == 3 and abs(sum(history[0]["mix_weights"]) - 1) < 1e-4
    test = results["test"]
    assert 0 <= test["accuracy"] <= 100 and 0 <= test["macro_f1"] <= 100
    assert set(test["per_class"]) == {"very negative", "negative", "neutral", "positive", "very positive"}
    assert sum(map(sum, test["confusion"]["counts"])) == 5  # test = every second root sentence
    report = (run / "test.report.txt").read_text()
    assert "macro-F1" in report and "| gold / predicted |" in report
    rows = (run / "test.predictions.txt").read_text().splitlines()
    assert rows[0] == "line\tgold\tpredicted\ttext" and len(rows) == 6
    assert results["best_epoch"] == max(history, key=lambda r: r["dev_accuracy"])["epoch"]


def test_same_seed_gives_identical_results(sst_dir, tmp_path):
    config = sst_config(sst_dir, tmp_path / "model", **{"train.epochs": 2})
    a = Trainer(config, tmp_path / "a", progress=False, log=quiet).run()
    b = Trainer(config, tmp_path / "b", progress=False, log=quiet).run()
    assert a["test"] == b["test"]


def test_no_elmo_baseline_trains_from_words_and_chars(sst_dir, tmp_path):
    config = sst_config(
        sst_dir,
        tmp_path / "model",
        **{"model.elmo.enabled": False, "model.words.dim": 8, "model.words.min_count": 1, "model.chars.filters": 6},
    )
    results = Trainer(config, tmp_path / "run", progress=False, log=quiet).run()
    assert results["backbone"] is None and "accuracy" in results["test"]


def test_phrases_add_train_subtrees_only_and_dedupe(sst_dir, tmp_path):
    plain = build_task(sst_config(sst_dir, tmp_path / "m"))
    plain.load()
    task = build_task(sst_config(sst_dir, tmp_path / "m", **{"data.phrases": True}))
    task.load()
    train, dev = task.splits["train"], task.splits["dev"]
    assert len(dev) == len(plain.splits["dev"]) and all(dev.is_root)
    assert sum(train.is_root) == len(plain.splits["train"]) == 20
    phrases = [(tuple(t), label) for t, label, root in zip(train.tokens, train.labels, train.is_root) if not root]
    assert phrases and len(phrases) == len(set(phrases))  # the file has every tree twice: phrases once
    assert (("great", "film"), "3") in phrases  # the subtree "great film" of a label-3 tree
    half = build_task(sst_config(sst_dir, tmp_path / "m", **{"data.phrases": True, "data.phrase_sample": 0.5}))
    half.load()
    assert sum(not r for r in half.splits["train"].is_root) == round(0.5 * len(phrases))


def test_sst2_drops_neutral_and_uses_two_labels(sst_dir, tmp_path):
    task = build_task(sst_config(sst_dir, tmp_path / "m", config="sst2.yaml"))
    task.load()
    task.fit_vocab(task.splits["train"])
    assert task.labels == ["0", "1"] and task.label_names == ["negative", "positive"]
    train = task.splits["train"]
    assert len(train) == 16 and set(train.labels) == {"0", "1"}


def test_ptb_escapes_become_plain_text_for_the_bilm():
    assert [unescape_ptb(t) for t in ["-LRB-", "-RRB-", "``", "''", "1\\/2", "\\*", "word"]] == [
        "(",
        ")",
        '"',
        '"',
        "1/2",
        "*",
        "word",
    ]


def test_evaluate_and_predict_verbs_on_a_sentiment_run(sst_dir, tmp_path, capsys):
    Trainer(
        sst_config(sst_dir, tmp_path / "model", **{"train.epochs": 1}), tmp_path / "run", progress=False, log=quiet
    ).run()
    assert (
        main(
            [
                "evaluate",
                str(tmp_path / "run"),
                "--data",
                str(sst_dir / "test.txt"),
                "--output",
                str(tmp_path / "eval.txt"),
            ]
        )
        == 0
    )
    assert "accuracy" in capsys.readouterr().out and (tmp_path / "eval.confusion.png").is_file()
    (tmp_path / "raw.txt").write_text("a great movie\nawful acting !\n")
    assert (
        main(
            [
                "predict",
                str(tmp_path / "run"),
                "--input",
                str(tmp_path / "raw.txt"),
                "--output",
                str(tmp_path / "pred.txt"),
            ]
        )
        == 0
    )
    lines = (tmp_path / "pred.txt").read_text().splitlines()
    assert len(lines) == 2 and lines[0].split("\t")[2] == "a great movie"
    assert lines[0].split("\t")[0] in {"0", "1", "2", "3", "4"}


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{label}\n" for t, label in rows), encoding="utf-8")
    return path


def tsv_config(tmp_path: Path, **extra) -> dict:
    rows = [(w, "pos") for w in POSITIVE] + [(w, "neg") for w in NEGATIVE]
    write_tsv(tmp_path / "train.tsv", rows * 2)
    write_tsv(tmp_path / "dev.tsv", rows[::2])
    write_tsv(tmp_path / "test.tsv", rows[1::2])
    return sst_config(
        tmp_path,
        tmp_path / "model",
        **{
            "data.format": "tsv",
            "data.train": "train.tsv",
            "data.dev": "dev.tsv",
            "data.test": "test.tsv",
            "data.text_column": "sentence",
            "data.label_column": "label",
            **extra,
        },
    )


def test_tsv_format_trains_with_the_file_labels(tmp_path):
    results = Trainer(tsv_config(tmp_path, **{"train.epochs": 2}), tmp_path / "run", progress=False, log=quiet).run()
    assert set(results["test"]["per_class"]) == {"neg", "pos"}


def test_auto_reads_a_tsv_by_its_columns_and_indented_text_as_text(tmp_path, capsys):
    Trainer(tsv_config(tmp_path, **{"train.epochs": 1}), tmp_path / "run", progress=False, log=quiet).run()
    capsys.readouterr()
    assert (
        main(["predict", str(tmp_path / "run"), "--input", str(tmp_path / "dev.tsv"), "--output", str(tmp_path / "o")])
        == 0
    )
    assert "(tsv input)" in capsys.readouterr().out
    (tmp_path / "indented.txt").write_text("\tA great movie.\n\tTruly awful acting.\n")
    assert (
        main(
            [
                "predict",
                str(tmp_path / "run"),
                "--input",
                str(tmp_path / "indented.txt"),
                "--output",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    assert "(text input)" in capsys.readouterr().out
    assert [line.split("\t")[2] for line in (tmp_path / "o").read_text().splitlines()] == [
        "A great movie .",
        "Truly awful acting .",
    ]


def test_empty_text_in_tsv_is_reported_with_file_and_line(tmp_path):
    config = tsv_config(tmp_path)
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\ngood film\tpos\n \tneg\n", encoding="utf-8")
    task = build_task(config)
    with pytest.raises(DataFormatError, match=r"dev\.tsv:3: empty text"):
        task.load()


def test_a_dev_label_unseen_in_train_is_reported_with_file_and_line(tmp_path):
    config = tsv_config(tmp_path)
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\ngood film\tpos\nso so\tmeh\n", encoding="utf-8")
    task = build_task(config)
    task.load()
    task.fit_vocab(task.splits["train"])
    with pytest.raises(DataFormatError, match=r"dev\.tsv:3: label 'meh' never occurs"):
        task.tensorise(task.splits["dev"])


def test_missing_sst_file_names_the_path_and_the_fix(tmp_path):
    task = build_task(sst_config(tmp_path / "nowhere", tmp_path / "model"))
    with pytest.raises(DataFormatError, match="SST_DIR"):
        task.load()


@pytest.mark.slow
def test_real_sst_splits_load_with_the_published_counts():
    sst = shared_path("sst")
    task = build_task(load_task_config(REPO / "configs" / "sst5.yaml", {"data.dir": str(sst)}))
    task.load()
    assert [len(task.splits[s]) for s in ("train", "dev", "test")] == [8544, 1101, 2210]
    binary = build_task(load_task_config(REPO / "configs" / "sst2.yaml", {"data.dir": str(sst)}))
    binary.load()
    assert [len(binary.splits[s]) for s in ("train", "dev", "test")] == [6920, 872, 1821]
    tokens = {t for s in task.splits["train"].tokens for t in s}
    assert "(" in tokens and "-LRB-" not in tokens


def test_a_training_limit_does_not_cut_the_file_given_to_predict(sst_dir, tmp_path):
    from tasks.run_dir import load_run

    Trainer(
        sst_config(sst_dir, tmp_path / "model", **{"train.epochs": 1, "data.limit": 2}),
        tmp_path / "run",
        progress=False,
        log=quiet,
    ).run()
    task = load_run(tmp_path / "run").task
    assert len(task.read(sst_dir / "test.txt").lines) == len((sst_dir / "test.txt").read_text().splitlines())
