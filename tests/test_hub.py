"""The TF-Hub-style entry point ``elmo_core.hub.load``: its two signatures, output dict, masking and
clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from elmo_core import BackboneUsageError, ElmoFileError, ModelNotAvailableError, batch_to_ids, hub, load_bilm
from elmo_core.io import file_sha256

SENTENCES = ["The dog barked", "A cat", "Birds sing in the trees"]
TOKENS = [s.split() for s in SENTENCES]


@pytest.fixture
def module(tiny_model):
    return hub.load(tiny_model[0].parent)


def test_output_dict_shapes_and_types(module):
    out = module(SENTENCES, signature="default", as_dict=True)
    assert list(out) == ["word_emb", "lstm_outputs1", "lstm_outputs2", "elmo", "default", "sequence_len"]
    assert out["word_emb"].shape == (3, 5, 8)  # the char-CNN layer: projection width
    assert out["lstm_outputs1"].shape == out["lstm_outputs2"].shape == out["elmo"].shape == (3, 5, 16)
    assert out["default"].shape == (3, 16) and out["sequence_len"].tolist() == [3, 2, 5]
    assert all(isinstance(v.numpy(), np.ndarray) for v in out.values())  # no autograd history
    assert torch.equal(module(SENTENCES), out["default"])  # as_dict=False gives "default", as TF-Hub


def test_outputs_are_the_backbone_layers_and_their_equal_weight_mix(module, tiny_model):
    out = module(SENTENCES, as_dict=True)
    with torch.no_grad():
        layers, mask = load_bilm(options=tiny_model[0], weights=tiny_model[1])(batch_to_ids(TOKENS))
    assert torch.allclose(out["word_emb"], layers[0, :, :, :8], atol=1e-6)
    assert torch.allclose(out["lstm_outputs2"], layers[2], atol=1e-6)
    assert torch.allclose(out["elmo"], layers.mean(0), atol=1e-6)  # softmax(0, 0, 0) * gamma 1
    expected = (layers.mean(0) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    assert torch.allclose(out["default"], expected, atol=1e-6)


def test_padding_never_changes_a_sentence(module):
    batch = module(SENTENCES, as_dict=True)
    for row, sentence in enumerate(SENTENCES):
        alone = module([sentence], as_dict=True)
        n = len(TOKENS[row])
        for key in ("word_emb", "lstm_outputs1", "lstm_outputs2", "elmo"):
            assert torch.allclose(batch[key][row, :n], alone[key][0], atol=1e-6), key
            assert float(batch[key][row, n:].abs().sum()) == 0.0, key
        assert torch.allclose(batch["default"][row], alone["default"][0], atol=1e-6)


def test_the_signatures_agree(module):
    by_text = module(SENTENCES, signature="default", as_dict=True)
    padded = [t + [""] * (5 - len(t)) for t in TOKENS]
    by_tokens = module({"tokens": padded, "sequence_len": [3, 2, 5]}, signature="tokens", as_dict=True)
    for key, value in by_text.items():
        assert torch.allclose(value.float(), by_tokens[key].float(), atol=1e-6), key
    # The output keeps the padded width of "tokens"; tokens past sequence_len are ignored.
    wide = module({"tokens": np.array([["A", "cat", "x", "y", ""]]), "sequence_len": np.array([2])}, signature="tokens")
    assert torch.allclose(wide, by_text["default"][1:2], atol=1e-6)
    as_dict = module({"tokens": [["A", "cat", "", "", "", ""]], "sequence_len": [2]}, "tokens", as_dict=True)
    assert as_dict["elmo"].shape == (1, 6, 16)


def test_default_signature_splits_on_spaces_like_tf_string_split(module):
    spaced = module(["  The   dog barked "], as_dict=True)
    assert spaced["sequence_len"].tolist() == [3]
    assert torch.allclose(spaced["default"], module(["The dog barked"]), atol=1e-6)
    assert module(["The\tdog barked"], as_dict=True)["sequence_len"].tolist() == [2]  # a tab is not a separator
    assert module([b"The dog barked"], as_dict=True)["sequence_len"].tolist() == [3]  # bytes, like tf.string


@pytest.mark.parametrize(
    "inputs, signature, message",
    [
        (["a b"], "tokenz", "unknown signature 'tokenz'"),
        ("The dog barked", "default", r"wrap a single sentence in a list"),
        ([], "default", "non-empty list of sentences"),
        (["a b", "   "], "default", "sentence 1 .* has no tokens"),
        (["a b", 3], "default", "sentence 1 is int 3, expected a str"),
        ({"tokens": [["a"]], "sequence_len": [1]}, "default", 'signature="tokens"'),
        (["a b"], "tokens", 'signature "tokens" takes'),
        ({"tokens": [["a"]]}, "tokens", r"got \['tokens'\]"),
        ({"tokens": [["a", "", "b"]], "sequence_len": [3]}, "tokens", "empty string inside sequence_len"),
        ({"tokens": [["a", ""]], "sequence_len": [0]}, "tokens", "expected an int from 1 to"),
        ({"tokens": [["a", ""]], "sequence_len": [3]}, "tokens", "expected an int from 1 to"),
        ({"tokens": [["a"], ["b"]], "sequence_len": [1]}, "tokens", "one length per sentence"),
        ({"tokens": ["a b"], "sequence_len": [1]}, "tokens", "expected a list of str"),
        ({"tokens": [["a", 5]], "sequence_len": [2]}, "tokens", r"\[0\]\[1\] is int 5"),
    ],
)
def test_bad_inputs_raise_clear_errors(module, inputs, signature, message):
    with pytest.raises(BackboneUsageError, match=message):
        module(inputs, signature=signature, as_dict=True)


def test_trainable_mix_gets_gradients(tiny_model):
    module = hub.load(tiny_model[0].parent, trainable=True)
    out = module(SENTENCES, as_dict=True)
    assert out["elmo"].requires_grad and not out["lstm_outputs1"].requires_grad
    out["default"].sum().backward()
    assert module.mix.weights.grad is not None and module.mix.gamma.grad is not None
    assert not any(p.requires_grad for p in module.bilm.parameters())


def test_load_by_name_folder_and_url(tiny_model, tmp_path):
    assert hub.load("default")(["The dog barked"]).shape == (1, 256)
    official = tmp_path / "official"
    official.mkdir()
    shutil.copy(tiny_model[0], official / "elmo_tiny_options.json")
    shutil.copy(tiny_model[1], official / "elmo_tiny_weights.hdf5")
    assert hub.load(official)(["a b"]).shape == (1, 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ElmoFileError, match="expected options.json and weights.hdf5"):
        hub.load(tmp_path / "empty")
    with pytest.raises(BackboneUsageError, match="the folder that holds"):
        hub.load(tiny_model[0])
    with pytest.raises(ModelNotAvailableError, match="neither a model name"):
        hub.load("no-such-model")
    with pytest.raises(ModelNotAvailableError, match="hub.load\\('original'\\)"):
        hub.load("https://tfhub.dev/google/elmo/3")
    with pytest.raises(BackboneUsageError, match="model name, a folder or a URL"):
        hub.load(3)


def test_official_folder_url_uses_the_named_model_cache(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("ELMO_TASKS_CACHE", str(tmp_path))
    folder = tmp_path / "small"
    folder.mkdir()
    shutil.copy(tiny_model[0], folder / "options.json")
    shutil.copy(tiny_model[1], folder / "weights.hdf5")
    sums = {name: file_sha256(folder / name) for name in ("options.json", "weights.hdf5")}
    (folder / "sha256.json").write_text(json.dumps(sums))
    url = "https://allennlp.s3.amazonaws.com/models/elmo/2x1024_128_2048cnn_1xhighway/"
    assert hub.load(url)(["a b"]).shape == (1, 16)  # the cached copy stands in for "small"
