"""Sentences packed end to end into LSTM rows (row_packing.py, issue #17): the plan covers every
position once; a layer told where sequences start inside a row gives each one's own outputs;
and the biLM with packing gives the vectors it gives without."""

import pytest
import torch

from elmo_core import batch_to_ids
from elmo_core import bilm as bilm_module
from elmo_core.errors import BackboneUsageError
from elmo_core.lstm import ProjectedLstmLayer
from elmo_core.random_model import TINY_OPTIONS, random_bilm
from elmo_core.row_packing import pack_rows

SENTENCES = [
    "The bark of the ancient oak was rough and grey , the dog said .".split(),
    "Bark".split(),
    "The dog let out a sharp bark".split(),
    "a b".split(),
    "Zürich 's naïve café".split(),
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen".split(),
    "x".split(),
]


def test_the_plan_places_every_position_once_in_rows_near_the_longest():
    lengths = [9, 1, 4, 4, 3, 2, 7, 5, 1]
    starts = [100 * i + 1 for i in range(len(lengths))]  # sentences somewhere in a flat frame
    packing = pack_rows(starts, lengths)
    assert packing.rows == -(-sum(lengths) // max(lengths))  # ceil(total / longest)
    assert packing.width == max(lengths) == int(packing.lengths.max())
    assert int(packing.lengths.sum()) == sum(lengths) and int(packing.lengths.min()) >= 1
    expected_source = sorted(s + k for s, n in zip(starts, lengths) for k in range(n))
    assert sorted(packing.source.tolist()) == expected_source
    assert len(set(packing.target.tolist())) == sum(lengths)
    # each row holds whole sentences back to back from position 0, up to its length
    for row in range(packing.rows):
        used = sorted(t - row * packing.width for t in packing.target.tolist() if t // packing.width == row)
        assert used == list(range(int(packing.lengths[row])))
    # a boundary wherever a sentence starts after position 0 of its row
    assert len(packing.boundaries) == len(lengths) - packing.rows
    assert pack_rows(starts, lengths).target.tolist() == packing.target.tolist()  # deterministic


def test_pack_then_unpack_gives_the_inputs_back():
    frame = torch.arange(40.0).view(40, 1).repeat(1, 3)
    packing = pack_rows([0, 10, 20, 30], [6, 10, 2, 3])
    packed = packing.pack(frame)
    assert packed.shape == (packing.rows, packing.width, 3)
    back = packing.unpack(packed, 40)
    covered = torch.zeros(40, dtype=torch.bool)
    covered[packing.source] = True
    assert torch.equal(back[covered], frame[covered]) and bool((back[~covered] == 0).all())


@pytest.mark.parametrize("bad", [[], [3, 0]])
def test_the_plan_refuses_empty_sentences(bad):
    with pytest.raises(ValueError, match="length >= 1"):
        pack_rows(list(range(len(bad))), bad)


@pytest.mark.parametrize("go_forward", [True, False])
def test_a_layer_gives_each_packed_sequence_its_own_outputs(go_forward):
    torch.manual_seed(0)
    layer = ProjectedLstmLayer(6, 16, 5, 3.0, 3.0, go_forward=go_forward)
    first, second, third = torch.randn(1, 4, 6), torch.randn(1, 3, 6), torch.randn(1, 6, 6)
    with torch.no_grad():
        alone = [layer(x, torch.tensor([x.shape[1]]))[0][0] for x in (first, second, third)]
        # row 0: first then second; row 1: third alone
        rows = torch.zeros(2, 7, 6)
        rows[0, :4], rows[0, 4:7], rows[1, :6] = first[0], second[0], third[0]
        packed, _ = layer(rows, torch.tensor([7, 6]), boundaries=torch.tensor([[0, 4]]))
        unpacked, _ = layer(rows, torch.tensor([7, 6]))  # without the boundary the state runs on
    for got, want in ((packed[0, :4], alone[0]), (packed[0, 4:7], alone[1]), (packed[1, :6], alone[2])):
        assert torch.allclose(got, want, atol=1e-6)
    changed = unpacked[0, 4:7] if go_forward else unpacked[0, :4]
    assert not torch.allclose(changed, packed[0, 4:7] if go_forward else packed[0, :4], atol=1e-3)


def test_boundaries_need_inference():
    layer = ProjectedLstmLayer(6, 16, 5, 3.0, 3.0, go_forward=True)
    with pytest.raises(BackboneUsageError, match="inference only"):
        layer(torch.randn(1, 7, 6), torch.tensor([7]), boundaries=torch.tensor([[0, 4]]))


def _packing_calls(monkeypatch) -> list[int]:
    calls = []
    real = bilm_module.pack_rows
    monkeypatch.setattr(bilm_module, "pack_rows", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


@pytest.mark.parametrize("skip_boundary_steps", [True, False])
def test_the_bilm_gives_the_same_vectors_packed(monkeypatch, skip_boundary_steps):
    """Several batches in one forward_many call, packed together (both directions, the first
    layer's per-word input gates, skip connections) or not: the same vectors to rounding, and the
    same bits on a second packed call."""
    calls = _packing_calls(monkeypatch)
    model = random_bilm(TINY_OPTIONS, seed=3, init="scaled-normal")
    model.skip_boundary_steps = skip_boundary_steps
    batches = [batch_to_ids(SENTENCES[:3]), batch_to_ids(SENTENCES[3:])]
    with torch.no_grad():
        model.pack_sentences = False
        plain = model.forward_many(batches)
        assert calls == []
        model.pack_sentences = True
        packed = model.forward_many(batches)
        assert len(calls) == 2  # one plan per direction
        again = model.forward_many(batches)
    for p, q, r in zip(plain, packed, again):
        assert torch.equal(p.mask, q.mask)
        assert (p.layers - q.layers).abs().max() <= 1e-5
        assert torch.equal(q.layers, r.layers)


def test_packing_only_where_it_applies(monkeypatch):
    """By default only a large recurrent weight packs (the tiny model's does not); never with
    autograd or a stateful model."""
    calls = _packing_calls(monkeypatch)
    ids = batch_to_ids(SENTENCES)
    model = random_bilm(TINY_OPTIONS, seed=0)
    with torch.no_grad():
        model(ids)
    assert calls == []
    model.pack_sentences = True
    model(ids)  # with autograd: the sequence function, rows not packed
    assert calls == []
    stateful = random_bilm(TINY_OPTIONS, seed=0)
    stateful.stateful, stateful.pack_sentences = True, True
    with torch.no_grad():
        stateful(ids)
    assert calls == []
    with torch.no_grad():
        model(ids)
    assert len(calls) == 2
