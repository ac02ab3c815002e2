"""elmo_core.random_model, and models with other layer counts than the usual 2 LSTM layers."""

from __future__ import annotations

import copy

import h5py
import numpy as np
import pytest
import torch

import helpers
from elmo_core import batch_to_ids, load_bilm
from elmo_core.embed import embed_file
from elmo_core.errors import BackboneUsageError
from elmo_core.io import file_sha256
from elmo_core.loading import model_identity
from elmo_core.random_model import TINY_OPTIONS, random_bilm, write_random_model
from elmo_core.store import FeatureStore, build_store, layers_for_batch

SENTENCES = [["The", "dog", "barked"], ["A", "cat"], ["Birds", "sing", "in", "the", "morning", "."]]


def test_the_test_helpers_use_the_package_helper():
    assert helpers.write_random_model is write_random_model and helpers.TINY_OPTIONS is TINY_OPTIONS


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = write_random_model(tmp_path / "a", seed=5)
    b = write_random_model(tmp_path / "b", seed=5)
    c = write_random_model(tmp_path / "c", seed=6)
    assert [file_sha256(p) for p in a] == [file_sha256(p) for p in b]
    assert file_sha256(a[1]) != file_sha256(c[1])
    assert model_identity(*a) == model_identity(*b) != model_identity(*c)


def test_inits():
    uniform = random_bilm(seed=0).char_cnn
    scaled = random_bilm(seed=0, init="scaled-normal").char_cnn
    with torch.no_grad():
        assert float(uniform.projection.weight.abs().max()) <= 0.5
        assert not torch.equal(uniform.projection.weight, scaled.projection.weight)
        assert float(scaled.char_embedding.weight[0].abs().max()) == 0.0  # padding row stays zero
    with pytest.raises(BackboneUsageError, match="init must be one of"):
        random_bilm(init="xavier")


def test_the_two_batch_planners_have_distinct_names():
    import elmo_core.embed
    import tasks.batching

    assert not hasattr(elmo_core.embed, "length_sorted_batches") and hasattr(tasks.batching, "length_sorted_batches")


@pytest.mark.parametrize("n_layers", [1, 3])
def test_embed_and_store_follow_the_models_layer_count(tmp_path, n_layers):
    options = copy.deepcopy(TINY_OPTIONS)
    options["lstm"]["n_layers"] = n_layers
    files = write_random_model(tmp_path / "model", options)
    bilm = load_bilm(options=files[0], weights=files[1])
    assert bilm.num_layers == n_layers + 1
    with torch.no_grad():
        expected = bilm(batch_to_ids(SENTENCES)).layers

    text = tmp_path / "in.txt"
    text.write_text("\n".join(" ".join(s) for s in SENTENCES) + "\n", encoding="utf-8")
    embed_file(bilm, text, tmp_path / "out.hdf5", progress=False)
    with h5py.File(tmp_path / "out.hdf5") as out:
        for i, sentence in enumerate(SENTENCES):
            assert out[str(i)].shape == (n_layers + 1, len(sentence), bilm.output_dim)

    model_id = model_identity(*files)
    build_store(tmp_path / "store", bilm, model_id, SENTENCES, dtype="float32", progress=False)
    store = FeatureStore(tmp_path / "store", model_id)
    assert store.num_layers == n_layers + 1
    layers, mask = layers_for_batch(store, SENTENCES)
    assert layers.shape == expected.shape
    np.testing.assert_allclose(layers.numpy(), expected.numpy(), atol=1e-5)
