"""Batches grouped into windows for ``ElmoBiLm.forward_many``: the grouping obeys its bounds and
changes no vector."""

import random

import pytest
import torch

from elmo_core import load_bilm
from elmo_core.embed import embed_sentences, plan_embedding_batches, plan_windows, window_tokens_for


def sentences_of(lengths):
    return [[f"w{i}_{j}" for j in range(n)] for i, n in enumerate(lengths)]


@pytest.mark.parametrize("max_tokens, max_batches", [(1, 8), (50, 8), (200, 3), (10**6, 8), (10**6, 1)])
def test_windows_keep_the_batch_order_and_their_bounds(max_tokens, max_batches):
    rng = random.Random(0)
    sentences = sentences_of([rng.randint(1, 30) for _ in range(300)])
    batches = plan_embedding_batches(sentences, max_tokens=60, max_batch=16)
    windows = plan_windows(batches, sentences, max_tokens, max_batches)
    assert [batch for window in windows for batch in window] == batches
    padded = [sum(len(b) * max(len(sentences[i]) for i in b) for b in w) for w in windows]
    assert all(len(w) <= max_batches for w in windows)
    assert all(tokens <= max_tokens or len(w) == 1 for tokens, w in zip(padded, windows))
    fewest = max(-(-sum(padded) // max_tokens), -(-len(batches) // max_batches))
    assert len(windows) <= fewest + 1  # greedy packing may need one more group than the bound
    if len(windows) > 1 and max_tokens >= 200:  # about equal groups
        assert len(windows[-1]) >= min(len(w) for w in windows[:-1]) - 1
    if len(windows) > 1 and len(windows[-1]) == 1:  # a lone last batch only where the bounds force it
        assert len(windows[-2]) == max_batches or padded[-2] + padded[-1] > max_tokens


def test_no_window_is_a_lone_leftover_batch():
    sentences = sentences_of([10] * 9)
    batches = [[i] for i in range(9)]
    assert [len(w) for w in plan_windows(batches, sentences, 10**6, max_batches=8)] == [5, 4]
    assert plan_windows([], sentences, 100) == []


def test_window_size_does_not_change_a_vector(tiny_model):
    bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    rng = random.Random(1)
    sentences = [[rng.choice("ab cd efg h ijk lm".split()) for _ in range(rng.randint(1, 12))] for _ in range(60)]
    batches = plan_embedding_batches(sentences, max_tokens=40)
    assert len(batches) > 8
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runs = [
            dict(embed_sentences(bilm, sentences, batches, progress=False, window_tokens=w)) for w in (1, 100, None)
        ]
    finally:
        torch.set_num_threads(threads)
    assert sorted(runs[0]) == list(range(60))
    assert all(all((run[i] == runs[0][i]).all() for i in runs[0]) for run in runs[1:])
    assert window_tokens_for(bilm) * 4 * bilm.num_layers * bilm.output_dim <= 256 * 2**20
