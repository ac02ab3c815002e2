"""The char-CNN's training path (elmo_core/char_cnn.py: ``WindowMaxPool`` over each word's own
windows) against autograd's gradients of the convolution over every position it replaced
(``pool_full_width``), and the biLM encoding each distinct word of a training batch once."""

from __future__ import annotations

import pytest
import torch

from elmo_core import batch_to_ids
from elmo_core import char_cnn as char_cnn_module
from elmo_core.char_ids import MAX_CHARS
from elmo_core.random_model import random_bilm
from helpers import TINY_OPTIONS

# Length 1 (<bow> x <eow>), every length up to past the 48 bytes a word keeps (the longest fill
# the row: no all-padding window), multi-byte characters, the sentence markers, and repeated
# n-grams: windows with the same characters, so the same score (ties), as the padding windows are.
WORDS = ["x" * n for n in range(1, 52)] + ["é" * 30, "<S>", "</S>", "a", "ab", "abab", "abcabcabc", "aab", "baa"]
FILTERS = [[[1, 4], [2, 4], [3, 8], [7, 16]], [[2, 5]], [[5, 3], [1, 2]]]


def encoder(filters, max_chars=MAX_CHARS, dtype=torch.float64):
    options = {**TINY_OPTIONS, "char_cnn": {**TINY_OPTIONS["char_cnn"], "filters": filters}}
    options["char_cnn"]["max_characters_per_token"] = max_chars
    return random_bilm(options, seed=1, init="scaled-normal").char_cnn.to(dtype)


def pooled_and_gradients(cnn, ids, pool: str, autocast: bool = False) -> dict[str, torch.Tensor]:
    """The pooled filter responses and the gradients of the char embedding and every convolution's
    weight and bias for a fixed random loss on them."""
    cnn.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        pooled = getattr(cnn, pool)(ids)
    weights = torch.randn(pooled.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    (pooled.double() * weights).sum().backward()
    grads = {"pooled": pooled.detach(), "d_char_embedding": cnn.char_embedding.weight.grad}
    for i, conv in enumerate(cnn.convolutions):
        grads |= {f"d_conv{i}_weight": conv.weight.grad, f"d_conv{i}_bias": conv.bias.grad}
    return grads


def word_ids(max_chars: int) -> torch.Tensor:
    return batch_to_ids([WORDS], max_chars)[0]


@pytest.mark.parametrize("filters", FILTERS)
@pytest.mark.parametrize("max_chars", [MAX_CHARS, 12])
def test_windows_give_the_full_width_gradients_float64(filters, max_chars):
    cnn = encoder(filters, max_chars)
    ids = word_ids(max_chars)
    full = pooled_and_gradients(cnn, ids, "pool_full_width")
    windows = pooled_and_gradients(cnn, ids, "pool_windows")
    assert full.keys() == windows.keys()
    for name, expected in full.items():
        assert windows[name].dtype == expected.dtype, name
        torch.testing.assert_close(windows[name], expected, rtol=1e-12, atol=1e-12, msg=name)


def test_ties_between_different_windows_take_the_first_as_max_does():
    """A filter of zero weights scores every window alike: the full-width ``max`` gives the first
    window the gradient, and so must the windows path (identical windows would hide this)."""
    cnn = encoder([[2, 3], [3, 4]])
    with torch.no_grad():
        cnn.convolutions[1].weight[1:3] = 0
    ids = word_ids(MAX_CHARS)
    full = pooled_and_gradients(cnn, ids, "pool_full_width")
    windows = pooled_and_gradients(cnn, ids, "pool_windows")
    assert (full["pooled"][:, 4:6] == cnn.convolutions[1].bias[1:3]).all()  # every window ties
    for name, expected in full.items():
        torch.testing.assert_close(windows[name], expected, rtol=1e-12, atol=1e-12, msg=name)


def test_no_words():
    cnn = encoder(FILTERS[0])
    none = torch.zeros(0, MAX_CHARS, dtype=torch.long)
    windows = pooled_and_gradients(cnn, none, "pool_windows")
    assert windows["pooled"].shape == (0, cnn.options.n_filters)
    assert all(not grad.any() for name, grad in windows.items() if name != "pooled")


@pytest.mark.parametrize("count", [1, 2, 9, 300])
def test_first_max_is_max_with_its_first_index(count):
    block = torch.randint(0, 3, (6, count, 5), generator=torch.Generator().manual_seed(count)).float()  # many ties
    best, first = char_cnn_module.first_max(block)
    expected = block.max(dim=1)
    assert torch.equal(best, expected.values) and torch.equal(first, expected.indices)


def test_gradcheck_float64():
    cnn = encoder([[1, 2], [3, 3]], max_chars=9)
    ids = batch_to_ids([["a", "abc", "abcdefg", "aa", "<S>"]], 9)[0]
    weight, _ = cnn.stacked_filters()
    last_start = 9 - cnn.filter_widths(ids.device)
    inputs = (cnn.char_embedding.weight.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_())
    assert torch.autograd.gradcheck(
        lambda embedding, filters: char_cnn_module.WindowMaxPool.apply(embedding, filters, ids, last_start),
        inputs,
        eps=1e-6,
        atol=1e-7,
    )


def test_bf16_autocast_trains_close_to_fp32():
    cnn = encoder(FILTERS[0], dtype=torch.float32)
    ids = word_ids(MAX_CHARS)
    fp32 = pooled_and_gradients(cnn, ids, "pool_full_width")
    bf16 = pooled_and_gradients(cnn, ids, "pool_windows", autocast=True)
    for name, expected in fp32.items():
        assert torch.isfinite(bf16[name]).all() and bf16[name].dtype == torch.float32, name
        scale = float(expected.abs().max())
        assert float((bf16[name] - expected).abs().max()) <= 1e-5 * scale, name  # the pool runs in fp32
    cnn.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = cnn(ids)  # highway and projection in bf16
    out.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in cnn.parameters() if p.grad is not None)


def test_training_pools_by_windows_and_inference_by_length(monkeypatch):
    cnn = encoder(FILTERS[0], dtype=torch.float32)
    calls = []
    for name in ("pool_full_width", "pool_by_length", "pool_windows"):
        method = getattr(type(cnn), name)
        monkeypatch.setattr(cnn, name, lambda ids, name=name, method=method: calls.append(name) or method(cnn, ids))
    ids = word_ids(MAX_CHARS)
    with torch.no_grad():
        cnn(ids)
    cnn(ids)
    monkeypatch.setattr(char_cnn_module, "windows_in_training", False)
    cnn(ids)
    assert calls == ["pool_by_length", "pool_windows", "pool_full_width"]


def test_training_encodes_each_distinct_word_once():
    bilm = random_bilm(seed=2).train()
    sentences = [["the", "dog", "saw", "the", "dog"], ["the", "cat"]]
    seen = []
    original = bilm.char_cnn.forward
    bilm.char_cnn.forward = lambda ids: seen.append(ids.shape[0]) or original(ids)
    out = bilm(batch_to_ids(sentences))
    out.layers.sum().backward()
    assert seen == [6]  # the, dog, saw, cat, <S>, </S>
    assert bilm.char_cnn.char_embedding.weight.grad.abs().sum() > 0
