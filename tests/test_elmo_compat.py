"""The AllenNLP-compatible ``elmo_core.Elmo``: AllenNLP's constructor, output dict and semantics on
our backbone. The side-by-side numbers against AllenNLP itself run when its venv exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch

from elmo_core import BackboneUsageError, Elmo, ModelNotAvailableError, batch_to_ids, load_bilm
from elmo_core.io import file_sha256
from elmo_core.models import OFFICIAL_MODELS
from helpers import REPO

SENTENCES = [["The", "dog", "barked"], ["A", "cat"], ["Birds", "sing", "in", "the", "trees"]]
SMALL = "2x1024_128_2048cnn_1xhighway"
ALLENNLP_URL = f"https://allennlp.s3.amazonaws.com/models/elmo/{SMALL}/elmo_{SMALL}_"


@pytest.fixture
def model(tiny_model):
    return tuple(str(p) for p in tiny_model)


def bilm_layers(model, sentences=SENTENCES) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return load_bilm(options=model[0], weights=model[1])(batch_to_ids(sentences))


def test_output_dict_shapes_and_mask(model):
    elmo = Elmo(model[0], model[1], 2, dropout=0)
    out = elmo(batch_to_ids(SENTENCES))
    assert set(out) == {"elmo_representations", "mask"}
    assert len(out["elmo_representations"]) == 2
    assert all(r.shape == (3, 5, 16) for r in out["elmo_representations"])
    assert out["mask"].dtype == torch.bool and out["mask"].sum(1).tolist() == [3, 2, 5]
    assert elmo.get_output_dim() == 16 and elmo.num_layers == 3
    assert float(out["elmo_representations"][0][1, 2:].detach().abs().max()) == 0.0  # padding is zero


def test_default_mix_is_the_layer_average_of_the_stateless_backbone(model):
    layers, _ = bilm_layers(model)
    out = Elmo(model[0], model[1], 1, dropout=0)(batch_to_ids(SENTENCES))
    assert torch.allclose(out["elmo_representations"][0], layers.mean(0), atol=1e-6)


def test_each_representation_has_its_own_trainable_mix(model):
    elmo = Elmo(model[0], model[1], 2, dropout=0)
    with torch.no_grad():
        elmo.scalar_mix_1.weights.copy_(torch.tensor([-1e9, -1e9, 0.0]))
    first, second = elmo(batch_to_ids(SENTENCES))["elmo_representations"]
    layers, _ = bilm_layers(model)
    assert torch.allclose(second, layers[2], atol=1e-6) and not torch.allclose(first, second)
    first.sum().backward()
    assert elmo.scalar_mix_0.weights.grad is not None and elmo.scalar_mix_1.weights.grad is None
    assert not any(p.requires_grad for p in elmo.bilm.parameters())


def test_dropout_zero_is_deterministic_and_dropout_applies_in_training(model):
    ids = batch_to_ids(SENTENCES)
    elmo = Elmo(model[0], model[1], 1, dropout=0).train()
    assert torch.equal(elmo(ids)["elmo_representations"][0], elmo(ids)["elmo_representations"][0])
    dropped = Elmo(model[0], model[1], 1, dropout=0.5).train()
    a, b = dropped(ids)["elmo_representations"][0], dropped(ids)["elmo_representations"][0]
    assert not torch.equal(a, b)
    dropped.eval()
    assert torch.equal(dropped(ids)["elmo_representations"][0], elmo(ids)["elmo_representations"][0])
    assert not dropped.bilm.training


def test_scalar_mix_parameters_are_fixed_pre_softmax_weights(model):
    elmo = Elmo(model[0], model[1], 2, dropout=0, scalar_mix_parameters=[-9e10, 1, -9e10])
    out = elmo(batch_to_ids(SENTENCES))
    layers, _ = bilm_layers(model)
    for rep in out["elmo_representations"]:
        assert torch.allclose(rep, layers[1], atol=1e-6)
    assert not any(p.requires_grad for p in elmo.parameters())
    with pytest.raises(BackboneUsageError, match="2 initial weights given for 3 layers"):
        Elmo(model[0], model[1], 1, scalar_mix_parameters=[0.0, 1.0])


def test_keep_sentence_boundaries_adds_the_boundary_positions(model):
    ids = batch_to_ids(SENTENCES)
    plain = Elmo(model[0], model[1], 1, dropout=0)(ids)
    kept = Elmo(model[0], model[1], 1, dropout=0, keep_sentence_boundaries=True)(ids)
    rep, mask = kept["elmo_representations"][0].detach(), kept["mask"]
    assert rep.shape == (3, 7, 16) and mask.sum(1).tolist() == [5, 4, 7]
    for row, length in enumerate([3, 2, 5]):
        assert torch.allclose(rep[row, 1 : length + 1], plain["elmo_representations"][0][row, :length], atol=1e-6)
        assert float(rep[row, 0].abs().sum()) > 0 and float(rep[row, length + 1].abs().sum()) > 0  # <S>, </S>
        assert float(rep[row, length + 2 :].abs().sum()) == 0.0


def test_layer_norm_statistics_include_the_boundaries(model):
    ids = batch_to_ids(SENTENCES)
    with torch.no_grad():
        kept = Elmo(model[0], model[1], 1, dropout=0, do_layer_norm=True, keep_sentence_boundaries=True)(ids)
        plain = Elmo(model[0], model[1], 1, dropout=0, do_layer_norm=True)(ids)["elmo_representations"][0]
    rep, mask = kept["elmo_representations"][0], kept["mask"]
    # equal weights over three layers each normalised over the real positions (<S>, </S> included)
    assert abs(float(rep[mask].mean())) < 1e-5
    for row, length in enumerate([3, 2, 5]):  # the same statistics whether or not boundaries are kept
        assert torch.allclose(plain[row, :length], rep[row, 1 : length + 1], atol=1e-6)


def test_stateless_by_default_and_stateful_on_request(model):
    ids = batch_to_ids(SENTENCES)
    alone = batch_to_ids([SENTENCES[1]])
    stateless = Elmo(model[0], model[1], 1, dropout=0)
    first = stateless(ids)["elmo_representations"][0]
    assert torch.allclose(stateless(ids)["elmo_representations"][0], first, atol=0)
    assert torch.allclose(stateless(alone)["elmo_representations"][0][0], first[1, :2], atol=1e-6)
    stateful = Elmo(model[0], model[1], 1, dropout=0, stateful=True)
    assert stateful.stateful and not stateless.stateful
    assert torch.allclose(stateful(ids)["elmo_representations"][0], first, atol=1e-6)  # zero state first
    assert not torch.allclose(stateful(ids)["elmo_representations"][0], first, atol=1e-4)  # carried state
    stateful.reset_states()
    assert torch.allclose(stateful(ids)["elmo_representations"][0], first, atol=1e-6)


def test_vocab_to_cache_word_inputs_give_the_char_path_numbers(model):
    vocab = ["@@PADDING@@", *sorted({w for s in SENTENCES for w in s})]
    index = {w: i for i, w in enumerate(vocab)}
    words = torch.zeros(3, 5, dtype=torch.long)
    for row, sentence in enumerate(SENTENCES):
        words[row, : len(sentence)] = torch.tensor([index[w] for w in sentence])
    ids = batch_to_ids(SENTENCES)
    elmo = Elmo(model[0], model[1], 1, dropout=0, vocab_to_cache=vocab)
    by_chars = Elmo(model[0], model[1], 1, dropout=0)(ids)
    by_words = elmo(ids, words)
    assert torch.equal(by_words["mask"], by_chars["mask"])
    assert torch.allclose(by_words["elmo_representations"][0], by_chars["elmo_representations"][0], atol=1e-6)
    # Word ids beyond the cache fall back to the characters, as in AllenNLP.
    fallback = elmo(ids, words + 100 * (words > 0))
    assert torch.allclose(fallback["elmo_representations"][0], by_chars["elmo_representations"][0], atol=1e-6)


def test_requires_grad_fine_tunes_the_bilm(model):
    elmo = Elmo(model[0], model[1], 1, dropout=0, requires_grad=True)
    elmo(batch_to_ids(SENTENCES))["elmo_representations"][0].sum().backward()
    assert elmo.bilm.char_cnn.projection.weight.grad is not None
    assert elmo.bilm.forward_layers[0].state_linear.weight.grad is not None


def test_fine_tuning_runs_the_first_layer_per_word_with_the_per_position_gradients(model, monkeypatch):
    """The char path passes the batch's word types to run_lstms (the first layer's input GEMM once
    per distinct word); its gradients equal those of the per-position path up to float rounding."""

    def gradients(drop_types: bool) -> tuple[dict, list]:
        elmo = Elmo(model[0], model[1], 1, dropout=0, requires_grad=True)
        seen, run = [], elmo.bilm.run_lstms

        def spy(tokens, lengths, boundary_outputs=True, types=None):
            seen.append(types is not None)
            return run(tokens, lengths, boundary_outputs, None if drop_types else types)

        monkeypatch.setattr(elmo.bilm, "run_lstms", spy)
        elmo(batch_to_ids(SENTENCES))["elmo_representations"][0].pow(2).sum().backward()
        return {n: p.grad.clone() for n, p in elmo.bilm.named_parameters() if p.grad is not None}, seen

    by_word, seen = gradients(drop_types=False)
    by_position, _ = gradients(drop_types=True)
    assert seen == [True]
    assert by_word.keys() == by_position.keys() and "forward_layers.0.input_linear.weight" in by_word
    for name, grad in by_word.items():
        assert torch.allclose(grad, by_position[name], rtol=1e-5, atol=1e-6), name


def test_inputs_with_more_leading_dimensions_and_empty_rows(model):
    """(batch, n_sentences, time, 50) as AllenNLP accepts it; an all-padding row gives zeros."""
    ids = batch_to_ids(SENTENCES)
    stacked = torch.stack([ids, torch.cat([ids[:2], torch.zeros_like(ids[:1])])])
    with torch.no_grad():
        out = Elmo(model[0], model[1], 1, dropout=0)(stacked)
    rep, mask = out["elmo_representations"][0], out["mask"]
    assert rep.shape == (2, 3, 5, 16) and mask.shape == (2, 3, 5)
    assert mask[1, 2].sum() == 0 and float(rep[1, 2].abs().sum()) == 0.0
    assert torch.allclose(rep[0], bilm_layers(model)[0].mean(0), atol=1e-6)
    assert torch.allclose(rep[1, :2], rep[0, :2], atol=1e-6)


def test_model_names_module_and_bad_arguments(model):
    shipped = Elmo("default", None, 1, dropout=0)
    assert shipped.get_output_dim() == 256
    assert Elmo("default", "default", 1).get_output_dim() == 256
    own = Elmo(None, None, 1, module=load_bilm(options=model[0], weights=model[1]))
    assert own.get_output_dim() == 16
    with pytest.raises(BackboneUsageError, match="module"):
        Elmo(model[0], model[1], 1, module=load_bilm(options=model[0], weights=model[1]))
    with pytest.raises(BackboneUsageError, match="weight_file is None"):
        Elmo(model[0], None, 1)
    with pytest.raises(BackboneUsageError, match="num_output_representations"):
        Elmo(model[0], model[1], 0)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network: every download fails like an unreachable host; the model cache is empty."""

    def refuse(url, target, timeout=30.0):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("elmo_core.models.download", refuse)
    monkeypatch.setenv("ELMO_TASKS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("host", ["https://allennlp.s3.amazonaws.com", "https://s3-us-west-2.amazonaws.com/allennlp"])
def test_official_urls_resolve_through_the_named_model_cache(offline, model, host):
    folder = offline / "small"
    folder.mkdir(parents=True)
    for source, name in zip(model, ("options.json", "weights.hdf5")):
        (folder / name).write_bytes(Path(source).read_bytes())
    sums = {name: file_sha256(folder / name) for name in ("options.json", "weights.hdf5")}
    (folder / "sha256.json").write_text(json.dumps(sums))
    prefix = f"{host}/models/elmo/{SMALL}/elmo_{SMALL}_"
    elmo = Elmo(prefix + "options.json", prefix + "weights.hdf5", 1)
    assert elmo.get_output_dim() == 16  # the cached copy stands in for "small"
    with pytest.raises(BackboneUsageError, match="weights file"):
        Elmo(prefix + "options.json", prefix + "options.json", 1)


def test_official_url_offline_error_names_the_url(offline):
    with pytest.raises(ModelNotAvailableError) as err:
        Elmo(ALLENNLP_URL + "options.json", ALLENNLP_URL + "weights.hdf5", 1)
    message = str(err.value)
    assert ALLENNLP_URL + "options.json" in message and "'small'" in message
    assert OFFICIAL_MODELS["small"].weights_url in message and "load_bilm(options=..., weights=...)" in message
    with pytest.raises(ModelNotAvailableError, match="not one of the official ELMo models"):
        Elmo("https://example.org/my_elmo_options.json", "https://example.org/my_elmo_weights.hdf5", 1)


ANCHOR_SCRIPT = REPO / "benchmarks" / "allennlp_compat_check.py"


@pytest.mark.slow
def test_numbers_match_allennlp_side_by_side(tmp_path):
    """Both implementations on the TF fixture model, random "small" weights and the shipped default, stateful and
    reset procedures, every configuration (see the script); and the AllenNLP examples run under
    AllenNLP with only their import line changed."""
    result = subprocess.run(
        [sys.executable, str(ANCHOR_SCRIPT), "--examples", "--work", str(tmp_path), "--json", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        # one thread per process: on a shared 2-core machine OpenMP's spin-waiting makes two threads
        # many times slower as soon as anything else runs (the numbers do not depend on it)
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if result.returncode == 2 and result.stderr.startswith("cannot compare"):
        pytest.skip(result.stderr.strip())  # no AllenNLP venv here (../shared/anchors/allennlp/README.md)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["max_abs_diff"] <= 1e-5
    assert all(row["masks_equal"] for row in report["rows"]) and len(report["rows"]) == 36  # 3 models
    assert any(row["model"].startswith("shipped `default") for row in report["rows"])
    assert min(report["stateless_vs_stateful"].values()) > 1e-3
    examples = report["examples"]
    assert examples["allennlp_bark_similarity.py"]["ours"] == examples["allennlp_bark_similarity.py"]["allennlp"]
    assert "training accuracy: 1.00" in examples["allennlp_sentiment_classifier.py"]["allennlp"]
    assert "training tag accuracy: 1.00" in examples["allennlp_crf_tagger.py"]["allennlp"]
