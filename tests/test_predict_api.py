"""Raw text in, structured output out: ``predict``/``embed --format text|tokenized|conll`` (auto never
takes plain text for CoNLL), ``predict --output X.jsonl`` (offsets into the input), and the Python
API (``from tasks import load_model``) that returns the same objects."""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import pytest
import torch

from helpers import NEGATIVE, POSITIVE, REPO, SENTENCES, quiet, write_conll, write_random_model, write_trees
from tasks.cli import main
from tasks.errors import UsageError
from tasks.registry import load_task_config
from tasks.trainer import Trainer

torch.set_num_threads(1)

NEWS = (
    "Peter Blackburn said Germany and France agreed.\tThe European Commission said so!\r\n"
    "EU rejects German call\rBritain's representative Werner Zwingmann — in Brussels — agreed.\n\n"
    "Zoë  visited BRUSSELS on 1996-08-22.\n"
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny backbone, an NER run that has learnt the toy entities, and an SST run."""
    root = tmp_path_factory.mktemp("predict-api")
    options, weights = write_random_model(root / "model")
    backbone = {"backbone.name": None, "backbone.options": str(options), "backbone.weights": str(weights)}
    write_conll(root / "train.txt", SENTENCES * 3)
    write_conll(root / "dev.txt", SENTENCES)
    ner = {
        "data.dir": str(root),
        "data.train": "train.txt",
        "data.dev": "dev.txt",
        "data.test": None,
        "backbone.store": None,
        "train.epochs": 20,
        "train.lr": 0.01,
        "train.lr_decay": 1.0,  # a constant rate: the toy model memorises its entities
        "train.threads": 1,
        "model.hidden": 16,
        "model.words.min_count": 1,
        "model.words.pretrained": None,
        **backbone,
    }
    Trainer(
        load_task_config(REPO / "configs" / "ner_conll2003.yaml", ner), root / "ner", progress=False, log=quiet
    ).run()
    sst = root / "sst"
    sst.mkdir()
    rows = [(w, 4) for w in POSITIVE] + [(w, 0) for w in NEGATIVE]
    for name in ("train.txt", "dev.txt", "test.txt"):
        write_trees(sst / name, rows)
    sst_config = {
        "data.dir": str(sst),
        "train.epochs": 1,
        "train.threads": 1,
        "model.hidden": 8,
        "model.mlp": [8],
        **backbone,
    }
    Trainer(
        load_task_config(REPO / "configs" / "sst5.yaml", sst_config), root / "sst-run", progress=False, log=quiet
    ).run()
    return {
        "root": root,
        "ner": root / "ner",
        "sst": root / "sst-run",
        "conll": root / "dev.txt",
        "trees": sst / "test.txt",
        "options": options,
        "weights": weights,
    }


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def check_offsets(text: str, records: list[dict]) -> None:
    for record in records:
        assert text[record["start"] : record["end"]] == record["text"]
        for item in record["tokens"] + record.get("entities", []) + record.get("instances", []):
            assert text[item["start"] : item["end"]] == item["text"], item


def predict(run: Path, source: Path, output: Path, *args: str) -> str:
    assert main(["predict", str(run), "--input", str(source), "--output", str(output), *args]) == 0
    return output.read_text(encoding="utf-8")


# -- predict: raw text, formats, JSON lines --------------------------------------------------------
def test_raw_text_gives_json_lines_whose_offsets_point_into_the_input(runs, tmp_path, capsys):
    source = tmp_path / "news.txt"
    source.write_bytes(b"\xef\xbb\xbf" + NEWS.encode())  # a BOM is not counted
    predict(runs["ner"], source, tmp_path / "news.jsonl")
    assert "(text input)" in capsys.readouterr().out
    records = jsonl(tmp_path / "news.jsonl")
    check_offsets(NEWS, records)
    assert [r["text"] for r in records[:3]] == [
        "Peter Blackburn said Germany and France agreed.",
        "The European Commission said so!",
        "EU rejects German call",
    ]
    assert list(records[0]) == ["text", "start", "end", "tokens", "tags", "entities"]
    assert all(len(r["tags"]) == len(r["tokens"]) for r in records)
    entities = {(e["text"], e["label"]) for r in records for e in r["entities"]}
    assert {("Peter Blackburn", "PER"), ("Germany", "LOC"), ("European Commission", "ORG")} <= entities


def test_predict_runs_the_backbone_at_the_precision_asked(runs, tmp_path, monkeypatch):
    source = tmp_path / "news.txt"
    source.write_text(NEWS, encoding="utf-8")
    exact = jsonl_of(predict(runs["ner"], source, tmp_path / "fp32.jsonl"))
    loaded = []
    import tasks.run_dir

    load_run = tasks.run_dir.load_run
    monkeypatch.setattr(tasks.run_dir, "load_run", lambda *a, **k: loaded.append(k) or load_run(*a, **k))
    int8 = jsonl_of(predict(runs["ner"], source, tmp_path / "int8.jsonl", "--precision", "int8"))
    assert loaded == [{"precision": "int8"}]
    assert [r["tokens"] for r in int8] == [r["tokens"] for r in exact]  # same sentences, tags may differ
    monkeypatch.setattr("elmo_core.loading.bf16_matrix_units", lambda: None)
    with pytest.warns(UserWarning, match="no bf16 matrix units"):
        fallback = jsonl_of(predict(runs["ner"], source, tmp_path / "bf16.jsonl", "--precision", "bf16"))
    assert fallback == exact  # fp32 ran instead


def jsonl_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_auto_never_takes_plain_text_for_conll(runs, tmp_path, capsys):
    plain = tmp_path / "plain.txt"
    plain.write_text("Alan Turing broke codes\n")  # four words, once read as a CoNLL row
    predict(runs["ner"], plain, tmp_path / "plain.out")
    assert "(text input)" in capsys.readouterr().out
    assert (tmp_path / "plain.out").read_text().splitlines()[0].split()[0] == "Alan"
    predict(runs["ner"], runs["conll"], tmp_path / "conll.jsonl")
    assert "(conll input)" in capsys.readouterr().out
    records = jsonl(tmp_path / "conll.jsonl")
    # a CoNLL file has no running text: offsets point into its tokens joined by spaces, one sentence a line
    check_offsets("\n".join(" ".join(w for w, _ in s) for s in SENTENCES), records)
    for fmt in ("conll", "labelled"):
        predict(runs["ner"], runs["conll"], tmp_path / f"{fmt}.jsonl", "--format", fmt)
        assert (tmp_path / f"{fmt}.jsonl").read_text() == (tmp_path / "conll.jsonl").read_text()


def test_tokenized_input_keeps_its_tokens_and_the_tag_lines_stay(runs, tmp_path):
    source = tmp_path / "tok.txt"
    source.write_text("Peter  visited Britain.\nEU said\n")
    lines = predict(runs["ner"], source, tmp_path / "tok.out", "--format", "tokenized")
    assert [line.split()[0] for line in lines.split("\n\n")[0].splitlines()] == ["Peter", "visited", "Britain."]
    predict(runs["ner"], source, tmp_path / "tok.jsonl", "--format", "tokenized")
    records = jsonl(tmp_path / "tok.jsonl")
    check_offsets(source.read_text(), records)
    assert [t["text"] for t in records[0]["tokens"]] == ["Peter", "visited", "Britain."]
    text_lines = predict(runs["ner"], source, tmp_path / "text.out", "--format", "text")
    assert [line.split()[0] for line in text_lines.split("\n\n")[0].splitlines()] == [
        "Peter",
        "visited",
        "Britain",
        ".",
    ]


def test_sentiment_json_lines_have_the_label_and_every_probability(runs, tmp_path, capsys):
    source = tmp_path / "reviews.txt"
    source.write_text("A great movie, truly wonderful acting! An awful mess.\nterrible film\n")
    predict(runs["sst"], source, tmp_path / "reviews.jsonl")
    assert "(text input)" in capsys.readouterr().out
    records = jsonl(tmp_path / "reviews.jsonl")
    check_offsets(source.read_text(), records)
    assert len(records) == 3
    for record in records:
        probabilities = record["probabilities"]
        assert list(probabilities) == ["0", "1", "2", "3", "4"]
        assert abs(sum(probabilities.values()) - 1) < 1e-4
        assert record["label"] == max(probabilities, key=probabilities.get)
        assert record["label_name"] in {"very negative", "negative", "neutral", "positive", "very positive"}
    lines = predict(runs["sst"], source, tmp_path / "reviews.tsv").splitlines()  # the TSV output stays
    assert [line.split("\t")[0] for line in lines] == [r["label"] for r in records]
    predict(runs["sst"], runs["trees"], tmp_path / "trees.jsonl")  # SST trees: by their structure
    assert "(sst input)" in capsys.readouterr().out
    paren = tmp_path / "paren.txt"
    paren.write_text("(Reuters) - a great movie\n")  # starts with "(", yet no tree
    predict(runs["sst"], paren, tmp_path / "paren.jsonl")
    assert "(text input)" in capsys.readouterr().out


def test_a_megabyte_line_without_punctuation_is_cut_into_bounded_sentences(runs, tmp_path):
    source = tmp_path / "big.txt"
    words = ["lorem", "ipsum", "dolor", "sit", "amet", "elit"]
    text = " ".join(words[i % 6] for i in range(200_000))[:1_000_000] + "\n"
    source.write_text(text)
    started = time.perf_counter()
    predict(runs["ner"], source, tmp_path / "big.jsonl")
    assert time.perf_counter() - started < 180
    records = jsonl(tmp_path / "big.jsonl")
    assert max(len(r["tokens"]) for r in records) == 250 and sum(len(r["tokens"]) for r in records) == len(text.split())
    check_offsets(text, records[:2] + records[-2:])


def test_embed_reads_text_tokenized_and_conll(runs, tmp_path, capsys):
    backbone = ["--options", str(runs["options"]), "--weights", str(runs["weights"]), "--quiet"]
    raw = tmp_path / "raw.txt"
    raw.write_text("The dog barked. It was loud!\nA cat.\n")

    def embed(source: Path, *args: str) -> dict:
        out = tmp_path / f"{source.stem}{len(args)}.hdf5"
        assert main(["embed", *backbone, "--input", str(source), "--output", str(out), *args]) == 0
        with h5py.File(out) as handle:
            index = json.loads(handle["sentence_to_index"][0])
            return {key: handle[value].shape[1] for key, value in index.items()}

    assert embed(raw, "--format", "text") == {"The dog barked .": 4, "It was loud !": 4, "A cat .": 3}
    assert embed(raw) == embed(raw, "--format", "tokenized") == {"The dog barked. It was loud!": 6, "A cat.": 2}
    conll = write_conll(tmp_path / "c.txt", SENTENCES[:2])
    assert embed(conll) == embed(conll, "--format", "conll") == {"EU rejects German call": 4, "Peter Blackburn": 2}


# -- the Python API ---------------------------------------------------------------------------------
def test_the_api_returns_what_predict_writes_as_json(runs, tmp_path):
    from tasks import load_model

    model = load_model(runs["ner"])
    assert model.task == "ner" and any(label.endswith("-PER") for label in model.labels)
    source = tmp_path / "news.txt"
    source.write_text(NEWS)
    predict(runs["ner"], source, tmp_path / "news.jsonl")
    sentences = model.predict(NEWS)
    assert [s.to_json() for s in sentences] == jsonl(tmp_path / "news.jsonl")
    assert [s.to_json() for s in model.predict_file(source)] == jsonl(tmp_path / "news.jsonl")
    first = sentences[0]
    assert [(e.text, e.label, e.start, e.end) for e in first.entities][:1] == [("Peter Blackburn", "PER", 0, 15)]
    assert [t.text for t in first.tokens][-2:] == ["agreed", "."]


def test_the_api_takes_texts_and_token_lists_in_one_batched_deterministic_pass(runs):
    from tasks import load_model

    model = load_model(runs["ner"])
    texts = ["Peter Blackburn agreed. Germany said so.", "   ", "France agreed"]
    grouped = model.predict(texts)
    assert [len(g) for g in grouped] == [2, 0, 1]
    for text, sentences in zip(texts, grouped):
        check_offsets(text, [s.to_json() for s in sentences])
    bilm = model.run.bilm
    assert len(bilm.type_cache) > 0  # the backbone's char-CNN vectors are cached per distinct word
    hits = bilm.type_cache.hits
    again = model.predict(texts)
    assert again == grouped and bilm.type_cache.hits > hits
    assert load_model(runs["ner"]).predict(texts) == grouped  # a fresh load: the same answers
    tokens = model.predict([["Peter", "Blackburn", "agreed"], ["New York", "said"]])
    assert [s.text for s in tokens] == ["Peter Blackburn agreed", "New York said"]
    assert (tokens[1].start, tokens[1].tokens[0].end) == (23, 31)  # into "Peter Blackburn agreed\nNew York said"


def test_the_api_evaluates_like_the_command_line(runs):
    from tasks import load_model
    from tasks.cli.evaluate import evaluate

    scores = load_model(runs["ner"]).evaluate(runs["conll"])
    assert scores == evaluate(runs["ner"], runs["conll"]) and 0 <= scores["f1"] <= 100


def test_a_sentiment_model_gives_labels_and_probabilities(runs):
    from tasks import load_model

    model = load_model(runs["sst"])
    (sentence,) = model.predict("a great movie")
    assert sentence.label == max(sentence.probabilities, key=sentence.probabilities.get)
    assert abs(sum(sentence.probabilities.values()) - 1) < 1e-4 and sentence.label_name


@pytest.mark.parametrize(
    "value, message",
    [
        ("", "nothing to predict (the text is empty"),
        (" \n\t ", "nothing to predict (the text is empty"),
        ([], "nothing to predict (an empty list)"),
        (["", "  "], "nothing to predict (all 2 texts are empty"),
        ([["Peter", ""]], "sentence 1, token 2: empty token ''"),
        ([["Peter"], []], "sentence 2: no tokens"),
        ([["Peter"], "Blackburn"], "a list of list and str"),
        (42, "got int"),
        (b"bytes", "got bytes"),
    ],
)
def test_the_api_refuses_empty_or_malformed_input_clearly(runs, value, message):
    from tasks import load_model

    with pytest.raises(UsageError, match="^predict: ") as caught:
        load_model(runs["ner"]).predict(value)
    assert message in str(caught.value)


def test_probes_give_a_tag_per_token(tmp_path):
    from golden_runs import GOLDEN
    from tasks import load_model

    (sentence,) = load_model(GOLDEN / "old_runs" / "pos").predict("The dog barked loudly.")
    assert [t.text for t in sentence.tokens] == ["The", "dog", "barked", "loudly", "."]
    assert len(sentence.tags) == 5 and list(sentence.to_json()) == ["text", "start", "end", "tokens", "tags"]


def test_predict_announces_its_batches_to_the_live_features_and_answers_the_same(runs, monkeypatch):
    from tasks import load_model
    from tasks.features import LiveFeatures

    model = load_model(runs["ner"])
    texts = [NEWS, "Peter Blackburn agreed. Germany said so.", "France agreed with the EU in Brussels."] * 30
    announced = []
    expect = LiveFeatures.expect
    monkeypatch.setattr(LiveFeatures, "expect", lambda self, plan: announced.append(plan) or expect(self, plan))
    ahead = model.predict(texts)
    assert len(announced) == 1 and len(announced[0]) > 2  # several batches of 64 sentences
    assert sum(len(batch) for batch in announced[0]) == sum(len(s) for s in ahead)
    monkeypatch.setattr(LiveFeatures, "expect", lambda self, plan: None)  # one backbone call per batch
    assert model.predict(texts) == ahead
