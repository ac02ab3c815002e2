"""Pooled classifier head: padding never changes an output, pooling maths, loss terms, bad settings."""

from __future__ import annotations

import pytest
import torch

from elmo_core.scalar_mix import ScalarMix
from tasks.encoders import TokenEncoder, Vocab
from tasks.heads.classifier import PooledClassifier, masked_max, masked_mean, masked_softmax

torch.set_num_threads(1)
NUM_LAYERS, DIM = 3, 8


def make_head(encoder: str, pooling, with_tokens: bool = True, seed: int = 0, l2: float = 0.0) -> PooledClassifier:
    torch.manual_seed(seed)
    tokens = TokenEncoder(Vocab(["a", "b", "c"]), 5, Vocab(list("abc")), 4, 6) if with_tokens else None
    head = PooledClassifier(
        3, ScalarMix(NUM_LAYERS, l2_coef=l2), DIM, tokens, encoder=encoder, hidden=7, pooling=pooling, mlp=[9]
    )
    return head.eval()


def inputs(lengths: list[int], time: int, seed: int = 1, garbage: float = 0.0):
    """Random ELMo layers / ids for sentences of ``lengths`` padded to ``time``; padded positions hold
    ``garbage`` (ELMo layers) and real-looking ids, so only the mask can keep them out."""
    g = torch.Generator().manual_seed(seed)
    batch = len(lengths)
    layers = torch.full((NUM_LAYERS, batch, time, DIM), garbage)
    word_ids = torch.randint(2, 5, (batch, time), generator=g)
    char_ids = torch.randint(2, 5, (batch, time, 3), generator=g)
    mask = torch.zeros(batch, time, dtype=torch.bool)
    for row, n in enumerate(lengths):
        layers[:, row, :n] = torch.randn(NUM_LAYERS, n, DIM, generator=g)
        mask[row, :n] = True
    return layers, mask, word_ids, char_ids


@pytest.mark.parametrize("encoder", ["lstm", "none"])
@pytest.mark.parametrize("pooling", ["mean", "max", "attention", ("mean", "max", "attention")])
def test_padding_never_changes_the_output(encoder, pooling):
    head = make_head(encoder, pooling)
    layers, mask, words, chars = inputs([4], 4)
    alone = head.logits(layers, mask, words, chars)
    # The same sentence padded to 9 positions with huge values, next to a longer sentence.
    padded_layers, padded_mask, padded_words, padded_chars = inputs([4, 9], 9, seed=7, garbage=1e4)
    padded_layers[:, 0, :4], padded_words[0, :4], padded_chars[0, :4] = layers[:, 0], words[0], chars[0]
    batched = head.logits(padded_layers, padded_mask, padded_words, padded_chars)
    assert torch.allclose(alone[0], batched[0], atol=1e-5), (alone, batched)


def test_garbage_in_padding_is_ignored_by_every_pooling():
    states = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    noisy = states.clone()
    noisy[0, 2:] = 1e6
    assert torch.allclose(masked_mean(states, mask), masked_mean(noisy, mask))
    assert torch.allclose(masked_max(states, mask), masked_max(noisy, mask))
    assert torch.allclose(masked_mean(states, mask)[0], states[0, :2].mean(0))
    assert torch.allclose(masked_max(states, mask)[0], states[0, :2].max(0).values)
    weights = masked_softmax(torch.randn(2, 5), mask)
    assert torch.all(weights[0, 2:] == 0) and torch.allclose(weights.sum(-1), torch.ones(2))


def test_elmo_only_head_without_token_encoder():
    head = make_head("none", "mean", with_tokens=False)
    layers, mask, words, chars = inputs([3, 5], 5)
    assert head.logits(layers, mask, words, chars).shape == (2, 3)
    assert (
        head.predict(layers, mask, words, chars).tolist() == head.logits(layers, mask, words, chars).argmax(-1).tolist()
    )


def test_loss_is_cross_entropy_plus_the_mix_penalty():
    head = make_head("lstm", ["mean", "max"], l2=0.5)
    with torch.no_grad():
        head.mix.weights.copy_(torch.tensor([1.0, -2.0, 0.5]))
    layers, mask, words, chars = inputs([3, 5], 5)
    labels = torch.tensor([0, 2])
    expected = torch.nn.functional.cross_entropy(head.logits(layers, mask, words, chars), labels) + 0.5 * (1 + 4 + 0.25)
    assert torch.allclose(head.loss(layers, mask, words, chars, labels), expected)


def test_a_few_steps_fit_a_tiny_problem():
    head = make_head("lstm", "max")
    layers, mask, words, chars = inputs([3, 5, 4, 2], 5)
    labels = torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        first = float(head.loss(layers, mask, words, chars, labels))
    optimizer = torch.optim.Adam(head.parameters(), lr=0.02)
    head.train()
    for _ in range(60):
        optimizer.zero_grad()
        head.loss(layers, mask, words, chars, labels).backward()
        optimizer.step()
    head.eval()
    with torch.no_grad():
        assert float(head.loss(layers, mask, words, chars, labels)) < first / 2
        assert head.predict(layers, mask, words, chars).tolist() == labels.tolist()


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="no input"):
        PooledClassifier(2, None, 0, None)
    with pytest.raises(ValueError, match="pooling"):
        PooledClassifier(2, ScalarMix(2), 4, None, pooling="median")
    with pytest.raises(ValueError, match="encoder"):
        PooledClassifier(2, ScalarMix(2), 4, None, encoder="cnn")
