"""Live features (prediction): batches announced with ``expect`` are embedded a window at a time,
the same vectors bit for bit as one backbone call per batch; ``predict`` announces its batches."""

import random

import torch

from elmo_core import load_bilm
from tasks.batching import length_sorted_batches
from tasks.features import LiveFeatures


def random_sentences(n, seed=0):
    rng = random.Random(seed)
    words = "the a dog barks Paris EU said agreed 1996 rough grey oak".split()
    return [[rng.choice(words) for _ in range(rng.randint(1, 15))] for _ in range(n)]


def counting(bilm):
    calls = []
    forward_many = bilm.forward_many
    bilm.forward_many = lambda batches: calls.append(len(batches)) or forward_many(batches)
    return calls


def test_expected_batches_come_a_window_at_a_time_with_the_same_bits(tiny_model):
    sentences = random_sentences(300)
    plan = length_sorted_batches([len(s) for s in sentences], 16, None)
    plain, windowed = (load_bilm(options=tiny_model[0], weights=tiny_model[1]) for _ in range(2))
    plain_calls, windowed_calls = counting(plain), counting(windowed)
    one_by_one, ahead = LiveFeatures(plain, sentences), LiveFeatures(windowed, sentences)
    ahead.expect(plan)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for batch in plan:
            expected = one_by_one.batch(batch)
            got = ahead.batch(batch)
            assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
        unexpected = [3, 0, 7]  # not in the plan: embedded on its own
        assert torch.equal(ahead.batch(unexpected)[0], one_by_one.batch(unexpected)[0])
    finally:
        torch.set_num_threads(threads)
    assert len(plan) == 19 and plain_calls == [1] * 20
    assert windowed_calls == [7, 7, 5, 1]  # windows of at most 8 batches, about equal; then the odd one
    assert ahead._ready == {}  # nothing kept once handed out


def test_a_batch_outside_the_next_window_embeds_nothing_ahead(tiny_model):
    sentences = random_sentences(40)
    bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    calls = counting(bilm)
    features = LiveFeatures(bilm, sentences)
    plan = [[2 * i, 2 * i + 1] for i in range(10)]  # two windows of 5 batches
    features.expect(plan)
    features.batch(plan[7])  # in the second window: embedded alone
    assert calls == [1] and len(features._windows) == 2
    features.batch(plan[0])  # the first window's first batch: the whole window
    assert calls == [1, 5] and set(features._ready) == {tuple(b) for b in plan[1:5]}
