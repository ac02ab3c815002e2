"""WSD task: nearest sense centroid with first-sense backoff, the candidate-masked classifier,
scoring through the framework scorer, multiword handling, features, the trainer and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from data.errors import DataFormatError
from elmo_core import load_bilm
from elmo_core.scalar_mix import ScalarMix
from helpers import (
    BANK_LAND,
    BANK_MONEY,
    MONEY,
    MULTIWORD,
    PLANT,
    PLANT_FIRST,
    REPO,
    RIVER,
    quiet,
    require_wordnet,
    shared_path,
    write_random_model,
    write_wsd,
)
from tasks.cli import main
from tasks.experiments.wsd_centroid import centroid_answers, fit_centroids, fixed_mix, prepare_task, run_centroid_method
from tasks.features import InMemoryFeatures, LiveFeatures
from tasks.heads.sense import CandidateSenseClassifier, SenseCentroids
from tasks.metrics.wsd import evaluate
from tasks.registry import load_task_config
from tasks.trainer import Trainer
from tasks.wsd import InstanceFeatures, WsdConfig, WsdTask, expand_sentence, make_split, split_multiword

torch.set_num_threads(1)


@pytest.fixture
def wsd_dir(tmp_path: Path) -> Path:
    require_wordnet()
    write_wsd(tmp_path, "semcor", [MONEY, RIVER, MULTIWORD, MONEY, RIVER])
    write_wsd(tmp_path, "semeval2007", [RIVER, PLANT], prefix="semeval2007.")
    write_wsd(tmp_path, "ALL", [MONEY, PLANT, MULTIWORD], prefix="senseval2.")
    return tmp_path


def wsd_config(data_dir: Path, model_dir: Path | None = None, **extra) -> dict:
    overrides = {
        "data.dir": str(data_dir),
        "train.epochs": 3,
        "train.patience": 5,
        "train.threads": 1,
        "train.batch_size": 4,
        "model.sense_dim": 8,
        **extra,
    }
    if model_dir is not None:
        options, weights = write_random_model(model_dir)
        overrides.update({"backbone.name": None, "backbone.options": str(options), "backbone.weights": str(weights)})
    return load_task_config(REPO / "configs" / "wsd.yaml", overrides)


def loaded_task(config: dict) -> WsdTask:
    task = WsdTask(config)
    task.load()
    task.fit_vocab(task.splits["train"])
    for split in task.splits.values():
        task.tensorise(split)
    return task


def set_features(split, vectors_by_key: dict[str, list[float]], default: list[float]) -> None:
    """Hand-made instance features: every layer of an instance gets the vector of its gold sense."""
    rows = [vectors_by_key.get((split.gold_keys(i) or [None])[0], default) for i in range(len(split))]
    split.features = InstanceFeatures(np.repeat(np.asarray(rows, dtype=np.float16)[:, None, :], 3, axis=1))


# -- nearest centroid -----------------------------------------------------------------------------
def test_sense_centroids_pick_the_nearest_sense_of_the_group():
    vectors = np.array([[1, 0], [0.8, 0.2], [0, 1], [0.1, 0.9], [5, 5]], dtype=np.float32)
    centroids = SenseCentroids.fit(vectors, ["a1", "a1", "a2", "a2", "b1"], ["a", "a", "a", "a", "b"])
    assert centroids.nearest(np.array([[0.9, 0.3], [0.2, 0.7], [0.2, 0.7]]), ["a", "a", "b"]) == ["a1", "a2", "b1"]
    # Cosine, not Euclidean: a long vector in a1's direction is still a1.
    assert centroids.nearest(np.array([[100.0, 1.0]]), ["a"]) == ["a1"]
    assert centroids.nearest(np.array([[1.0, 0.0]]), ["unseen"]) == [None]
    assert centroids.most_frequent(["a", "b", "unseen"]) == ["a1", "b1", None]


def test_centroid_method_uses_the_nearest_centroid_and_backs_off_to_the_first_sense(wsd_dir):
    task = loaded_task(wsd_config(wsd_dir))
    money, land = [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]
    set_features(task.splits["train"], {BANK_MONEY: money, BANK_LAND: land}, [0.0, 0.0, 1.0, 0.0])
    # Dev: RIVER's bank looks like money, PLANT's bank like land -- the opposite of their gold.
    dev = task.splits["dev"]
    set_features(dev, {BANK_LAND: money, BANK_MONEY: land}, [0.0, 0.0, 1.0, 0.0])
    mix = fixed_mix("layer:2", 3)
    answers = centroid_answers(task, fit_centroids(task, mix), dev, mix)
    by_lemma = {ref.lemma + str(ref.sentence): answers[ref.instance_id] for ref in dev.instances}
    assert by_lemma["bank0"] == BANK_MONEY and by_lemma["bank1"] == BANK_LAND
    # 'plant' never occurs in the training file: WordNet's first sense, whatever its vector says.
    assert by_lemma["plant1"] == PLANT_FIRST
    assert dev.answerable and len(dev) - len(dev.answerable) == 1


def test_centroid_results_are_scored_by_the_framework_scorer(wsd_dir, tmp_path):
    task = loaded_task(wsd_config(wsd_dir))
    keys = sorted({k for split in task.splits.values() for i in range(len(split)) for k in split.gold_keys(i)})
    for split in task.splits.values():  # every sense its own direction: the centroid method is exact
        set_features(split, {k: list(np.eye(len(keys))[n]) for n, k in enumerate(keys)}, [0.0] * len(keys))
    results = run_centroid_method(task, ["layer:1", "average"], tmp_path / "out", log=lambda *_: None)
    assert set(results) == {"centroid layer:1", "centroid average", "WordNet first sense", "SemCor most frequent sense"}
    answers = dict(
        line.split() for line in (tmp_path / "out" / "centroid_layer1.test.key.txt").read_text().splitlines()
    )
    assert results["centroid layer:1"]["test"]["f1"] == pytest.approx(
        100 * evaluate(task.splits["test"].corpus, answers).overall.f1
    )
    # Seen lemmas are all right (one direction per sense); only 'plant' (unseen) rests on WordNet's first sense.
    assert results["centroid layer:1"]["test"]["f1"] == pytest.approx(100.0)
    assert results["WordNet first sense"]["test"]["by_dataset"].keys() == {"senseval2"}
    assert set(results["centroid layer:1"]["test"]["by_pos"]) == {"NOUN", "VERB"}
    assert (tmp_path / "out" / "test.report.md").read_text().count("| overall |") == 4
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == results


# -- the candidate classifier ---------------------------------------------------------------------
def test_masked_softmax_never_predicts_a_non_candidate_sense():
    torch.manual_seed(0)
    head = CandidateSenseClassifier(10, ScalarMix(3), 4, sense_dim=4, dropout=0.0).eval()
    with torch.no_grad():  # make every non-candidate sense (and the padding id) overwhelmingly attractive
        head.bias.weight[:] = 1e6
        head.bias.weight[[3, 4, 7]] = 0.0
    layers = torch.randn(3, 2, 4)
    candidates = torch.tensor([[3, 4, 0], [7, 0, 0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    chosen = head.choose(layers, candidates, mask).tolist()
    assert chosen[0] in (3, 4) and chosen[1] == 7
    scores = head.scores(layers, candidates, mask)
    assert torch.all(scores[~mask] == torch.finfo(scores.dtype).min)
    loss = head.loss(layers, candidates, mask, torch.tensor([1, 0]))
    assert torch.isfinite(loss)


def test_vocabulary_has_wordnet_candidates_of_train_lemmas_only(wsd_dir):
    task = loaded_task(wsd_config(wsd_dir))
    bank = [task.senses[i] for i in task.groups["bank#NOUN"]]
    assert bank[:2] == [BANK_LAND, BANK_MONEY] and len(bank) == 10  # all ten WordNet noun senses
    assert "plant#NOUN" not in task.groups and task.senses[0] == "<pad>"
    train = task.splits["train"]
    # One-candidate lemmas (river, cash, ...) teach the softmax nothing and are left out of training.
    assert all(len(train.candidates[i]) > 1 for i in train.trainable)
    state = task.fit_vocab(train)
    assert json.loads(json.dumps(state)) == state


def test_classifier_trains_through_the_trainer_and_answers_only_candidates(wsd_dir, tmp_path):
    config = wsd_config(wsd_dir, tmp_path / "model")
    results = Trainer(config, tmp_path / "run", progress=False, log=lambda *_: None).run()
    run = tmp_path / "run"
    assert {"f1", "precision", "recall", "by_dataset", "by_pos", "first_sense"} <= set(results["test"])
    history = json.loads((run / "metrics.json").read_text())
    assert len(history) == 3 and len(history[0]["mix_weights"]) == 3
    answers = dict(line.split() for line in (run / "test.predictions.txt").read_text().splitlines())
    task = loaded_task(config)
    test = task.splits["test"]
    assert set(answers) == {ref.instance_id for ref in test.instances}
    for ref in test.instances:
        assert answers[ref.instance_id] in task.wordnet.candidate_senses(ref.lemma, ref.pos)
    plant = next(ref for ref in test.instances if ref.lemma == "plant")
    assert answers[plant.instance_id] == PLANT_FIRST
    assert results["test"]["f1"] == pytest.approx(100 * evaluate(test.corpus, answers).overall.f1)
    assert "WordNet first sense" in (run / "test.report.txt").read_text()


def test_evaluate_and_predict_verbs_on_a_wsd_run(wsd_dir, tmp_path, capsys):
    Trainer(
        wsd_config(wsd_dir, tmp_path / "model", **{"train.epochs": 1}),
        tmp_path / "run",
        progress=False,
        log=lambda *_: None,
    ).run()
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(wsd_dir / "ALL")]) == 0
    assert "f1" in capsys.readouterr().out
    assert (
        main(
            [
                "predict",
                str(tmp_path / "run"),
                "--input",
                str(wsd_dir / "ALL" / "ALL.data.xml"),
                "--output",
                str(tmp_path / "answers.key"),
            ]
        )
        == 0
    )
    assert len((tmp_path / "answers.key").read_text().splitlines()) == 7
    assert (
        main(
            [
                "predict",
                str(tmp_path / "run"),
                "--input",
                str(wsd_dir / "ALL" / "ALL.data.xml"),
                "--output",
                str(tmp_path / "x.key"),
                "--format",
                "text",
            ]
        )
        == 2
    )


def test_wsd_json_lines_and_the_python_api(wsd_dir, tmp_path, capsys):
    from tasks import load_model
    from tasks.errors import UsageError

    run = tmp_path / "run"
    Trainer(wsd_config(wsd_dir, tmp_path / "model", **{"train.epochs": 1}), run, progress=False, log=quiet).run()
    xml = wsd_dir / "ALL" / "ALL.data.xml"
    assert main(["predict", str(run), "--input", str(xml), "--output", str(tmp_path / "all.jsonl")]) == 0
    records = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    # the XML has no running text: offsets point into each sentence's tokens joined by spaces, one a line
    text = "\n".join(" ".join(word for word, *_ in sentence) for sentence in (MONEY, PLANT, MULTIWORD))
    instances = [i for r in records for i in r["instances"]]
    assert len(records) == 3 and len(instances) == 7
    for record in records:
        assert text[record["start"] : record["end"]] == record["text"]
        for item in record["tokens"] + record["instances"]:
            assert text[item["start"] : item["end"]] == item["text"]
    keys = dict(line.split() for line in (run / "test.predictions.txt").read_text().splitlines())
    assert {i["id"]: i["key"] for i in instances if i["key"]} == keys  # the same answers as the key file
    for instance in instances:
        if instance["source"] == "classifier":
            assert abs(sum(instance["candidates"].values()) - 1) < 1e-4
            assert instance["key"] == max(instance["candidates"], key=instance["candidates"].get)
        else:
            assert instance["candidates"] == {}
    assert {i["text"] for i in instances} >= {"bank", "Fulton_County"}
    model = load_model(run)
    assert [r.to_json() for r in model.predict_file(xml)] == records
    with pytest.raises(UsageError, match="raw text cannot be disambiguated"):
        model.predict("I robbed the bank.")
    capsys.readouterr()
    args = ["predict", str(run), "--input", str(xml), "--output", str(tmp_path / "x.key"), "--format", "tokenized"]
    assert main(args) == 2 and "raw text cannot be disambiguated" in capsys.readouterr().err


# -- data and features ----------------------------------------------------------------------------
def test_multiword_tokens_are_split_for_the_bilm_and_spans_kept():
    assert split_multiword("Fulton_County_Grand_Jury") == ["Fulton", "County", "Grand", "Jury"]
    assert split_multiword("Air Force") == ["Air", "Force"] and split_multiword("_") == ["_"]
    words, spans = expand_sentence(["The", "Air Force", "took_place", "."])
    assert words == ["The", "Air", "Force", "took", "place", "."]
    assert spans == [(0, 1), (1, 3), (3, 5), (5, 6)]
    assert expand_sentence(["took_place"], split_multiwords=False) == (["took_place"], [(0, 1)])


def test_instance_vectors_are_span_means_and_cached_equals_live(wsd_dir, tmp_path):
    task = WsdTask(wsd_config(wsd_dir))
    split = task.read(wsd_dir / "semcor")
    options, weights = write_random_model(tmp_path / "model")
    bilm = load_bilm(options=options, weights=weights)
    cached = InMemoryFeatures.compute(bilm, split.tokens, dtype=np.float32, progress=False)
    task.attach_features(split, cached)  # keeps the instances' vectors only
    multi = next(i for i, ref in enumerate(split.instances) if ref.end - ref.start == 2)
    ref = split.instances[multi]
    expected = cached.arrays[ref.sentence][:, ref.start : ref.end].mean(axis=1)
    assert np.allclose(split.features.array[multi], expected, atol=2e-3)  # stored as float16
    cached_array = split.features.array.copy()
    task.attach_features(split, LiveFeatures(bilm, split.tokens))
    assert np.allclose(split.features.array, cached_array, atol=2e-3)
    assert split.features.batch([0, multi]).shape == (3, 2, bilm.output_dim)


def test_live_features_are_told_the_chunks_they_will_be_asked_for(wsd_dir, tmp_path):
    task = WsdTask(wsd_config(wsd_dir))
    split = task.read(wsd_dir / "semcor")
    options, weights = write_random_model(tmp_path / "model")
    bilm = load_bilm(options=options, weights=weights)
    told, asked = [], []

    class Spy(LiveFeatures):
        def expect(self, batches):
            told.append(batches)
            super().expect(batches)

        def sentence_layers(self, indices):
            asked.append(list(indices))
            return super().sentence_layers(indices)

    lengths = [len(t) for t in split.tokens]
    ahead = InstanceFeatures.from_sentence_features(Spy(bilm, split.tokens), split.instances, lengths, chunk=2)
    plain = InstanceFeatures.from_sentence_features(
        InMemoryFeatures.compute(bilm, split.tokens, dtype=np.float32, progress=False), split.instances, lengths, 2
    )
    assert len(told) == 1 and told[0] == asked and len(asked) > 1
    assert np.array_equal(ahead.array, plain.array)


def test_prepare_task_runs_the_backbone_once_per_split(wsd_dir, tmp_path, monkeypatch):
    calls = []
    original = InMemoryFeatures.compute.__func__

    def counting(cls, bilm, sentences, **kwargs):
        calls.append(len(sentences))
        return original(cls, bilm, sentences, **kwargs)

    monkeypatch.setattr(InMemoryFeatures, "compute", classmethod(counting))
    task, timings = prepare_task(wsd_config(wsd_dir, tmp_path / "model"), progress=False, log=lambda *_: None)
    assert calls == [5, 2, 3] and set(timings["features_seconds"]) == {"train", "dev", "test"}
    run_centroid_method(task, ["layer:1", "layer:2", "average"], log=lambda *_: None)
    assert calls == [5, 2, 3]  # every mix reuses the cached instance vectors


def test_missing_data_names_the_path_and_the_fix(tmp_path):
    task = WsdTask(wsd_config(tmp_path / "nowhere"))
    with pytest.raises(DataFormatError, match="WSD_DIR"):
        task.load()


def test_limit_cuts_sentences_and_their_gold_keys(wsd_dir):
    task = WsdTask(wsd_config(wsd_dir, **{"data.limit": 2}))
    task.load()
    train = task.splits["train"]
    assert len(train.corpus.sentences) == 2 and len(train.corpus.gold) == len(train) == 5


@pytest.mark.slow
def test_first_sense_backoff_reproduces_the_published_baseline_on_all():
    require_wordnet()
    task = WsdTask(WsdConfig())
    split = task.read(shared_path("wsd", "ALL"))
    report = evaluate(split.corpus, task.first_sense_answers(split))
    assert round(100 * report.overall.f1, 1) == 65.2  # Raganato et al. (2017), WN 1st sense, ALL
    assert {k: round(100 * v.f1, 1) for k, v in report.by_dataset.items()} == {
        "senseval2": 66.8,
        "senseval3": 66.2,
        "semeval2007": 55.2,
        "semeval2013": 63.0,
        "semeval2015": 67.8,
    }


def test_make_split_keeps_instance_order_of_the_corpus(wsd_dir):
    task = WsdTask(wsd_config(wsd_dir))
    split = task.read(wsd_dir / "ALL")
    assert [ref.instance_id for ref in split.instances] == [i.instance_id for i in split.corpus.instances()]
    assert make_split(split.corpus, False).tokens[2] == ["The", "Fulton_County", "took_place"]
