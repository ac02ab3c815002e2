"""Backbone behaviour on random weights in the official layout, for many option combinations."""

import copy

import pytest
import torch

from elmo_core import ElmoBiLm, batch_to_ids, load_bilm, load_weights
from elmo_core.reference import ReferenceLayers
from helpers import TINY_OPTIONS, write_random_model

SENTENCES = [
    "The dog let out a sharp bark".split(),
    "Bark".split(),
    "The bark of the ancient oak was rough and grey".split(),
    "Zürich 's naïve café ‘ quotes ’".split(),
]


def variant(**changes):
    options = copy.deepcopy(TINY_OPTIONS)
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        if value is None:
            options[section].pop(key, None)
        else:
            options[section][key] = value
    return options


VARIANTS = {
    "default": variant(),
    "no_skip": variant(lstm__use_skip_connections=False),
    "no_clip": variant(lstm__cell_clip=None, lstm__proj_clip=None),
    "tanh_no_highway": variant(char_cnn__activation="tanh", char_cnn__n_highway=0),
    "three_layers_two_highways": variant(lstm__n_layers=3, char_cnn__n_highway=2),
    "n_characters_261": variant(char_cnn__n_characters=261),
    "one_filter": variant(char_cnn__filters=[[2, 5]]),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_fast_path_equals_reference_loop(tmp_path, name):
    options, weights = write_random_model(tmp_path, VARIANTS[name])
    bilm = load_bilm(options=options, weights=weights)
    ids = batch_to_ids(SENTENCES)
    with torch.no_grad():
        fast = bilm(ids)
        with ReferenceLayers(bilm):
            slow = bilm(ids)
    n_layers = VARIANTS[name]["lstm"]["n_layers"] + 1
    assert fast.layers.shape == (n_layers, 4, 10, 16)
    assert torch.equal(fast.mask, slow.mask)
    assert (fast.layers - slow.layers).abs().max() <= 1e-5


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_save_then_load_round_trip_is_exact(tmp_path, name):
    options, weights = write_random_model(tmp_path / "a", VARIANTS[name], seed=3)
    bilm = load_bilm(options=options, weights=weights)
    from elmo_core import save_weights

    save_weights(bilm, tmp_path / "copy.hdf5")
    again = ElmoBiLm(bilm.options)
    load_weights(again, tmp_path / "copy.hdf5")
    for (key, a), (_, b) in zip(bilm.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), key


def test_sentence_vectors_do_not_depend_on_batch_or_padding(tiny_model):
    bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    with torch.no_grad():
        together = bilm(batch_to_ids(SENTENCES)).layers
        for row, sentence in enumerate(SENTENCES):
            alone = bilm(batch_to_ids([sentence])).layers[:, 0]
            padded = bilm(batch_to_ids([sentence, ["x"] * 20])).layers[:, 0, : len(sentence)]
            n = len(sentence)
            assert (together[:, row, :n] - alone).abs().max() <= 1e-6
            assert (padded - alone).abs().max() <= 1e-6
            assert together[:, row, n:].abs().sum() == 0  # padding positions are zero


def test_layer_zero_is_the_token_vector_duplicated_and_context_free(tiny_model):
    bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    with torch.no_grad():
        out = bilm(batch_to_ids([SENTENCES[0], SENTENCES[2]])).layers
    bark_dog, bark_oak = out[:, 0, 6], out[:, 1, 1]  # "bark" in both sentences
    assert torch.equal(bark_dog[0, :8], bark_dog[0, 8:])
    assert torch.allclose(bark_dog[0], bark_oak[0], atol=1e-6)
    assert not torch.allclose(bark_dog[2], bark_oak[2], atol=1e-3)  # contextual layers differ


def test_type_cache_gives_the_same_vectors_and_counts_hits(tiny_model):
    bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    ids = batch_to_ids(SENTENCES)
    with torch.no_grad():
        first = bilm(ids).layers
        assert bilm.type_cache.hits == 0 and len(bilm.type_cache) > 0
        second = bilm(ids).layers
        assert bilm.type_cache.hits > 0
    assert torch.equal(first, second)


def test_type_cache_is_safe_under_threads_and_copies():
    """A server embeds requests from several threads with one backbone: concurrent lookups that
    evict each other's words give the right vectors (an unlocked cache raised KeyError when another
    thread evicted a word between its lookup and its use); a deep copy of the cache works."""
    import threading
    import time

    from elmo_core.type_cache import TypeCache

    cache = TypeCache(max_size=8)
    errors, looked_up = [], []

    def compute(words):
        time.sleep(1e-4)  # the char-CNN releases the GIL while it runs
        return words.float() * 2

    def worker(seed):
        generator = torch.Generator().manual_seed(seed)
        try:
            for _ in range(300):
                words = torch.unique(torch.randint(1, 30, (6, 3), generator=generator), dim=0)
                looked_up.append(len(words))
                assert torch.equal(cache.lookup(words, compute), words.float() * 2)
        except Exception as err:  # noqa: BLE001 - any failure in a thread is the finding
            errors.append(repr(err))

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert 0 < len(cache) <= 8 and cache.hits + cache.misses == sum(looked_up)
    twin = copy.deepcopy(cache)
    words = torch.tensor([[1, 2, 3]])
    assert torch.equal(twin.lookup(words, compute), cache.lookup(words, compute))


def test_type_cache_survives_mode_toggles_of_a_frozen_backbone_only(tiny_model):
    """A task model toggles train()/eval() every epoch: a frozen backbone keeps its cached word
    vectors; one whose weights can train (or get new weights loaded) drops them."""
    from elmo_core.elmo import NamedMixElmo

    bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    model = NamedMixElmo(bilm, ["ner"])
    ids = batch_to_ids(SENTENCES)
    model.eval()
    with torch.no_grad():
        before = model(ids)[0]["ner"]
    cached = len(bilm.type_cache)
    assert cached > 0
    model.train()
    model.eval()
    assert len(bilm.type_cache) == cached
    with torch.no_grad():
        assert torch.equal(model(ids)[0]["ner"], before)

    bilm.load_state_dict(bilm.state_dict())
    assert len(bilm.type_cache) == 0
    with torch.no_grad():
        model(ids)
    for param in bilm.parameters():
        param.requires_grad_(True)
    bilm.train()
    assert len(bilm.type_cache) == 0


def test_stateful_mode_carries_state_and_reset_forgets_it(tiny_model):
    bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1], stateful=True)
    ids = batch_to_ids(SENTENCES[:2])
    with torch.no_grad():
        first = bilm(ids).layers
        second = bilm(ids).layers
        bilm.reset_states()
        third = bilm(ids).layers
    assert not torch.allclose(first[2], second[2], atol=1e-5)
    assert torch.equal(first, third)


def test_gradients_flow_when_training(tiny_model):
    bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1]).train()
    out = bilm(batch_to_ids(SENTENCES))
    out.layers[1:].sum().backward()
    assert bilm.forward_layers[0].state_linear.weight.grad.abs().sum() > 0
    assert bilm.char_cnn.char_embedding.weight.grad.abs().sum() > 0


BAD_CHAR_IDS = {
    "a list": (lambda ids: ids.tolist(), "must be a tensor from batch_to_ids, got a list"),
    "2-d": (lambda ids: ids[0], r"must be \(batch, time, max_chars\) from batch_to_ids, got shape \(2, 50\)"),
    "float": (lambda ids: ids.float(), "must hold integer character ids .* got torch.float32"),
    "20 characters": (
        lambda ids: ids[:, :, :20],
        "has 20 characters per token; this model's max_characters_per_token is 50",
    ),
    "id 300": (
        lambda ids: ids.index_fill(2, torch.tensor([3]), 300),
        "holds 300 at sentence 0, token 0: character ids lie in 0..261",
    ),
    "negative": (lambda ids: -ids, "holds -259 at sentence 0, token 0: character ids lie in 0..261"),
}


@pytest.mark.parametrize("case", sorted(BAD_CHAR_IDS))
def test_bad_char_ids_name_what_is_wrong(tiny_model, case):
    from elmo_core.errors import BackboneUsageError

    bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    make, message = BAD_CHAR_IDS[case]
    with pytest.raises(BackboneUsageError, match=message), torch.no_grad():
        bilm(make(batch_to_ids([["the", "dog"]])))


@pytest.mark.parametrize(
    "batch, message",
    [
        ("the dog", "takes a list of sentences, each a list of tokens; got one str"),
        (["the dog", "barks"], r"sentence 0 of the batch is a str \('the dog'\), not a list of tokens: split it first"),
        ([["the", 3]], r"sentence 0, token 1 is not a str but int \(3\)"),
    ],
)
def test_batch_to_ids_refuses_strings_where_token_lists_belong(batch, message):
    """A sentence given as one string used to become one 'token' per character, silently."""
    from elmo_core.errors import BackboneUsageError

    with pytest.raises(BackboneUsageError, match=message):
        batch_to_ids(batch)


def test_other_integer_ids_and_an_empty_batch(tiny_model):
    bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    ids = batch_to_ids(SENTENCES)
    with torch.no_grad():
        assert torch.equal(bilm(ids.int()).layers, bilm(ids).layers)
        empty = bilm(batch_to_ids([]))
    assert empty.layers.shape == (3, 0, 0, bilm.output_dim) and empty.mask.shape == (0, 0)
