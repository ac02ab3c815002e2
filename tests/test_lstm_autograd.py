"""The training path of the biLM LSTM layer (elmo_core/lstm_autograd.py: one autograd Function per
layer and direction, batched weight gradients) against torch's gradients of the per-step loop it
replaced (``lstm_autograd.enabled = False``)."""

from __future__ import annotations

import itertools

import pytest
import torch

from elmo_core import lstm_autograd
from elmo_core.lstm import ProjectedLstmLayer, cell_elementwise

LENGTHS = [3, 7, 1, 5, 5, 7]  # ragged, unsorted, a length-1 row, ties


@pytest.fixture
def per_step_path():
    """Run the body with the per-step autograd loop; restores the switch."""
    lstm_autograd.enabled = False
    yield
    lstm_autograd.enabled = True


def run(layer, inputs, lengths, state=None, autocast=False, fast=True):
    """Outputs, final state and every gradient of a fixed random loss on all three."""
    lstm_autograd.enabled = fast
    try:
        layer.zero_grad(set_to_none=True)
        x = inputs.clone().requires_grad_()
        s = None if state is None else tuple(t.clone().requires_grad_() for t in state)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out, (h, c) = layer(x, lengths, s)
        loss = sum(
            (t.double() * torch.randn(t.shape, generator=torch.Generator().manual_seed(k), dtype=torch.float64)).sum()
            for k, t in enumerate((out, h, c))
        )
        loss.backward()
    finally:
        lstm_autograd.enabled = True
    results = {"out": out, "h": h, "c": c, "d_inputs": x.grad}
    if s is not None:
        results |= {"d_h0": s[0].grad, "d_c0": s[1].grad}
    return results | {f"d_{name}": p.grad for name, p in layer.named_parameters()}


def small_layer(go_forward, clip, dtype=torch.float32, sizes=(6, 10, 5)):
    torch.manual_seed(0)
    layer = ProjectedLstmLayer(*sizes, cell_clip=clip, proj_clip=clip, go_forward=go_forward)
    return layer.to(dtype)


@pytest.mark.parametrize("go_forward,stateful", list(itertools.product([True, False], [False, True])))
def test_gradcheck_float64_with_clipping_and_ragged_lengths(go_forward, stateful):
    clip = 0.3
    layer = small_layer(go_forward, clip=clip, dtype=torch.float64, sizes=(4, 5, 3))
    with torch.no_grad():
        for p in layer.parameters():
            p.mul_(3)
    names = [name for name, _ in layer.named_parameters()]
    lengths = torch.tensor([2, 4, 1, 4])
    torch.manual_seed(1)
    inputs = torch.randn(4, 5, 4, dtype=torch.float64)  # 5 steps: one past the longest row
    state = (torch.randn(4, 3, dtype=torch.float64) * 0.3, torch.randn(4, 5, dtype=torch.float64) * 0.3)

    def function(x, *rest):
        params = dict(zip(names, rest[-len(names) :]))
        initial = tuple(rest[:2]) if stateful else None
        out, (h, c) = torch.func.functional_call(layer, params, (x, lengths, initial))
        return out, h, c

    with torch.no_grad():  # both clips bite somewhere
        out, h, c = function(inputs, *state, *layer.parameters())
    assert (out.abs() == clip).any() and (c.abs() == clip).any()
    tensors = [inputs] + (list(state) if stateful else []) + [p.detach() for p in layer.parameters()]
    tensors = [t.clone().requires_grad_() for t in tensors]
    assert torch.autograd.gradcheck(function, tensors, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("go_forward,stateful,clip", list(itertools.product([True, False], [False, True], [None, 0.5])))
def test_equals_the_per_step_autograd_path_in_fp32(go_forward, stateful, clip):
    layer = small_layer(go_forward, clip, sizes=(16, 32, 8))
    torch.manual_seed(2)
    inputs = torch.randn(len(LENGTHS), 9, 16)
    lengths = torch.tensor(LENGTHS)
    state = (torch.randn(len(LENGTHS), 8), torch.randn(len(LENGTHS), 32)) if stateful else None
    fast = run(layer, inputs, lengths, state)
    slow = run(layer, inputs, lengths, state, fast=False)
    assert fast.keys() == slow.keys()
    for name in fast:
        assert fast[name].dtype == slow[name].dtype, name
        scale = max(1.0, slow[name].abs().max().item())
        # measured: <= 4e-7 relative (each path's own fp32 rounding against float64 is ~4e-7 too)
        assert (fast[name] - slow[name]).abs().max().item() <= 1e-6 * scale, name


@pytest.mark.parametrize("go_forward", [True, False])
def test_gradients_at_the_clip_boundary_pass_as_in_clamp(go_forward):
    """torch.clamp's gradient passes where lo <= x <= hi: a value exactly at the clip keeps it."""
    layer = small_layer(go_forward, clip=None, dtype=torch.float64, sizes=(3, 4, 2))
    cell = 4
    with torch.no_grad():
        for p in layer.parameters():
            p.zero_()
        layer.input_linear.bias[2 * cell : 3 * cell] = 100.0  # sigmoid(f) == 1 exactly, tanh(j) == 0
        layer.projection.weight.normal_()
    inputs = torch.randn(3, 4, 3, dtype=torch.float64)
    lengths = torch.tensor([4, 2, 3])
    # The cell state sits exactly on the cell clip at every step (c = 1 * c0 + sigmoid(i) * 0).
    layer.cell_clip = 0.75
    for c0, passes in ((0.75, True), (0.7500001, False)):
        state = (torch.zeros(3, 2, dtype=torch.float64), torch.full((3, cell), c0, dtype=torch.float64))
        fast = run(layer, inputs, lengths, state)
        slow = run(layer, inputs, lengths, state, fast=False)
        assert bool((fast["d_c0"] != 0).any()) == passes
        for name in fast:
            torch.testing.assert_close(fast[name], slow[name], rtol=1e-12, atol=1e-12)
    # h = clamp(p W, 0, 0) with p == 0 exactly (c stays 0): the projection sits on the clip.
    layer.cell_clip, layer.proj_clip = None, 0.0
    with torch.no_grad():
        layer.input_linear.bias.zero_()
        layer.input_linear.weight.normal_()
        layer.input_linear.weight[cell : 2 * cell] = 0.0  # tanh(j) == 0, so c == 0 and p == 0
    fast = run(layer, inputs, lengths)
    slow = run(layer, inputs, lengths, fast=False)
    assert bool((fast["d_input_linear.bias"][cell : 2 * cell] != 0).any())
    for name in fast:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("go_forward,clip", [(True, None), (False, 3.0)])
def test_bf16_autocast_stays_close_to_the_per_step_path(go_forward, clip):
    """Under bf16 autocast both paths run the GEMMs in bf16; this one does the pointwise math and
    keeps the cell state in fp32. Measured relative L2 errors, worst tensor (128/256/64 layer, 30
    steps, clip 3 as configured): new vs old <= 9.4e-3, new vs fp32 <= 4.9e-3, old vs fp32 <= 9.9e-3.
    With clips that bite everywhere (0.5) a bf16 rounding flips some clamp decisions and single
    rows' gradients jump, in either path: worst tensor vs fp32 over 5 seeds 1e-2..1.2e-1 (new),
    1.6e-2..5.5e-2 (old), so no tolerance is asserted there."""
    layer = small_layer(go_forward, clip, sizes=(128, 256, 64))
    torch.manual_seed(3)
    inputs = torch.randn(16, 30, 128)
    lengths = torch.randint(1, 31, (16,))
    lengths[0] = 30
    state = (torch.randn(16, 64), torch.randn(16, 256))
    fast = run(layer, inputs, lengths, state, autocast=True)
    slow = run(layer, inputs, lengths, state, autocast=True, fast=False)
    exact = run(layer, inputs, lengths, state, fast=False)
    for name in fast:
        assert fast[name].dtype == slow[name].dtype, name
        relative = lambda a, b: ((a.double() - b.double()).norm() / b.double().norm()).item()  # noqa: E731
        assert relative(fast[name], slow[name]) < 2e-2, name
        assert relative(fast[name], exact[name]) < 1e-2, name
    # A bf16 initial state (a later layer, whose input is bf16) gives the final c in bf16, as before.
    bf16_state = tuple(t.bfloat16() for t in state)
    fast = run(layer, inputs.bfloat16(), lengths, bf16_state, autocast=True)
    slow = run(layer, inputs.bfloat16(), lengths, bf16_state, autocast=True, fast=False)
    assert {k: v.dtype for k, v in fast.items()} == {k: v.dtype for k, v in slow.items()}


def test_backward_twice_with_retained_graph_gives_the_same_gradients():
    layer = small_layer(True, 0.5)
    inputs = torch.randn(len(LENGTHS), 7, 6, requires_grad=True)
    out, (h, c) = layer(inputs, torch.tensor(LENGTHS))
    loss = out.square().sum() + c.sum()
    first = torch.autograd.grad(loss, [inputs, *layer.parameters()], retain_graph=True)
    second = torch.autograd.grad(loss, [inputs, *layer.parameters()])
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_the_per_step_loop_remains_for_replaced_pointwise_math(monkeypatch):
    layer = small_layer(False, 0.5)
    calls = []

    def counting(gates, c, clip):
        calls.append(gates.shape[0])
        return cell_elementwise(gates, c, clip)

    inputs = torch.randn(len(LENGTHS), 7, 6)
    lengths = torch.tensor(LENGTHS)
    fast = run(layer, inputs, lengths)
    layer.elementwise = counting  # what fuse_cells does: the Function does not apply
    assert not lstm_autograd.applies(layer)
    replaced = run(layer, inputs, lengths)
    assert len(calls) == max(LENGTHS)
    for name in fast:
        torch.testing.assert_close(fast[name], replaced[name], rtol=1e-5, atol=1e-6)


def test_one_autograd_node_per_layer_and_direction():
    layer = small_layer(True, 0.5)
    out, _ = layer(torch.randn(len(LENGTHS), 7, 6), torch.tensor(LENGTHS))
    seen, stack = set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_node for next_node, _ in node.next_functions)
    assert sum(type(node).__name__ == "LstmSequenceBackward" for node in seen) == 1
    assert len(seen) < 20  # the per-step loop built hundreds


def typed_inputs(lengths, time, n_types, width, dtype=torch.float64, seed=4):
    """``(vectors (n_types, width), index (batch, time))``: random vectors, row 0 zero (padding, as
    in ``TokenTypes``), each real position one of rows ``1..n_types-1`` (so types repeat)."""
    generator = torch.Generator().manual_seed(seed)
    vectors = torch.randn(n_types, width, generator=generator, dtype=dtype)
    vectors[0] = 0
    index = torch.randint(1, n_types, (len(lengths), time), generator=generator)
    index[torch.arange(time)[None, :] >= torch.tensor(lengths)[:, None]] = 0
    return vectors, index


def rows_of_input_gemm(layer):
    """A list that records the rows of every ``layer.input_linear`` call."""
    rows = []
    layer.input_linear.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[0]))
    return rows


def run_typed(layer, vectors, index, lengths, state=None, by_type=True, autocast=False):
    """:func:`run` on ``vectors[index]``, with ``by_type`` or per position; the input gradient is
    that of ``vectors`` (through the gather in the per-position case)."""
    layer.zero_grad(set_to_none=True)
    v = vectors.clone().requires_grad_()
    s = None if state is None else tuple(t.clone().requires_grad_() for t in state)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out, (h, c) = layer(v[index], torch.tensor(lengths), s, (v, index) if by_type else None)
    loss = sum(
        (t.double() * torch.randn(t.shape, generator=torch.Generator().manual_seed(k), dtype=torch.float64)).sum()
        for k, t in enumerate((out, h, c))
    )
    loss.backward()
    results = {"out": out, "h": h, "c": c, "d_vectors": v.grad}
    if s is not None:
        results |= {"d_h0": s[0].grad, "d_c0": s[1].grad}
    return results | {f"d_{name}": p.grad for name, p in layer.named_parameters()}


@pytest.mark.parametrize("go_forward,stateful,clip", list(itertools.product([True, False], [False, True], [None, 0.3])))
def test_input_gates_by_type_give_the_per_position_gradients_in_float64(go_forward, stateful, clip):
    """The first layer's input GEMM once per distinct word (gathered to the positions) against once
    per position: the same outputs and gradients, up to float64 rounding (sums in another order)."""
    layer = small_layer(go_forward, clip, dtype=torch.float64, sizes=(16, 32, 8))
    with torch.no_grad():  # large enough for both clips to bite
        for p in layer.parameters():
            p.mul_(3)
    lengths = LENGTHS
    vectors, index = typed_inputs(lengths, 9, 6, 16)  # 5 words + padding over 28 positions
    generator = torch.Generator().manual_seed(5)
    state = tuple(torch.randn(len(lengths), n, generator=generator, dtype=torch.float64) for n in (8, 32))
    state = state if stateful else None
    rows = rows_of_input_gemm(layer)
    typed = run_typed(layer, vectors, index, lengths, state)
    positional = run_typed(layer, vectors, index, lengths, state, by_type=False)
    assert rows == [6, sum(lengths)]  # the by-type path did run
    if clip is not None:  # the clips bite somewhere
        assert (typed["out"].abs() == clip).any() and (typed["c"].abs() == clip).any()
    assert typed.keys() == positional.keys()
    for name in typed:
        torch.testing.assert_close(typed[name], positional[name], rtol=1e-12, atol=1e-12, msg=name)


def test_input_gates_by_type_only_when_there_are_fewer_types_than_positions():
    layer = small_layer(True, 0.5, dtype=torch.float64, sizes=(16, 32, 8))
    lengths = [2, 1, 3]
    vectors, index = typed_inputs(lengths, 3, 7, 16)  # 7 types >= 6 positions
    rows = rows_of_input_gemm(layer)
    typed = run_typed(layer, vectors, index, lengths)
    positional = run_typed(layer, vectors, index, lengths, by_type=False)
    assert rows == [6, 6]
    for name in typed:
        assert torch.equal(typed[name], positional[name]), name


@pytest.mark.parametrize("boundary_outputs", [True, False])
def test_bilm_first_layer_by_type_gives_the_per_position_gradients(boundary_outputs):
    """``ElmoBiLm.run_lstms`` with ``types`` under autograd (both directions, the backward one on
    ``index[:, 1:]`` when the boundary steps are skipped) against the same call without them."""
    from elmo_core.bilm import ElmoBiLm, TokenTypes
    from elmo_core.options import options_from_dict
    from elmo_core.random_model import TINY_OPTIONS

    torch.manual_seed(6)
    bilm = ElmoBiLm(options_from_dict(TINY_OPTIONS)).double().train()
    lengths = [9, 4, 6, 3, 9]  # with <S> and </S>
    vectors, index = typed_inputs(lengths, 9, 8, 8)
    layers = [bilm.forward_layers[0], bilm.backward_layers[0]]
    rows = [rows_of_input_gemm(layer) for layer in layers]
    lstm_parameters = [p for name, p in bilm.named_parameters() if "_layers." in name]

    def gradients(by_type):
        v = vectors.clone().requires_grad_()
        outputs = bilm.run_lstms(
            v[index], torch.tensor(lengths), boundary_outputs, TokenTypes(v, index) if by_type else None
        )
        generator = torch.Generator().manual_seed(7)
        loss = sum((o * torch.randn(o.shape, generator=generator, dtype=o.dtype)).sum() for o in outputs)
        return outputs, torch.autograd.grad(loss, [v, *lstm_parameters])

    typed_outputs, typed = gradients(True)
    assert [r[0] for r in rows] == [8, 8]
    positional_outputs, positional = gradients(False)
    for a, b in zip(typed_outputs + list(typed), positional_outputs + list(positional)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("go_forward", [True, False])
def test_input_gates_by_type_under_bf16_autocast(go_forward):
    """Under bf16 autocast the by-type input GEMM gives the dtypes of the per-position one, and
    values within bf16 rounding of them (the gradients are summed in another order)."""
    layer = small_layer(go_forward, 3.0, sizes=(128, 256, 64))
    lengths = [30, 12, 1, 25, 30, 7, 18, 22]
    vectors, index = typed_inputs(lengths, 30, 40, 128, dtype=torch.float32)
    state = (torch.randn(len(lengths), 64), torch.randn(len(lengths), 256))
    rows = rows_of_input_gemm(layer)
    typed = run_typed(layer, vectors, index, lengths, state, autocast=True)
    positional = run_typed(layer, vectors, index, lengths, state, by_type=False, autocast=True)
    assert rows == [40, sum(lengths)]
    for name in typed:
        assert typed[name].dtype == positional[name].dtype, name
        relative = ((typed[name].double() - positional[name].double()).norm() / positional[name].double().norm()).item()
        assert relative < 1e-2, name


def test_input_gates_by_type_are_deterministic():
    """The gather's backward (``index_add_``) sums in a fixed order: same inputs, bitwise same gradients."""
    layer = small_layer(False, 0.5, sizes=(16, 32, 8))
    vectors, index = typed_inputs(LENGTHS, 9, 6, 16, dtype=torch.float32)
    first = run_typed(layer, vectors, index, LENGTHS)
    second = run_typed(layer, vectors, index, LENGTHS)
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_the_gather_sums_bf16_gradients_in_fp32():
    """What the by-type input gates rely on under bf16 autocast: ``index_select``'s backward adds
    a type's bf16 gradients in fp32 (in bf16, 256 + 0.5 rounds back to 256, and the sum would stall)."""
    rows = torch.zeros(2, 4, dtype=torch.bfloat16, requires_grad=True)
    grad = torch.full((1001, 4), 0.5, dtype=torch.bfloat16)
    grad[0] = 256
    rows.index_select(0, torch.zeros(1001, dtype=torch.long)).backward(grad)
    assert torch.equal(rows.grad[0], torch.full((4,), 756.0, dtype=torch.bfloat16))


def test_pretraining_steps_with_by_type_input_gates_repeat_bitwise():
    """Adam steps of a small biLM language model whose first LSTM layers take the batch's word
    types: the same seed gives bitwise the same losses and weights."""
    from elmo_core.bilm import add_sentence_boundaries
    from elmo_core.char_ids import batch_to_ids
    from elmo_core.options import options_from_dict
    from elmo_core.pretrain import BiLmLanguageModel, word_id_batch
    from elmo_core.random_model import TINY_OPTIONS
    from elmo_core.vocab import Vocabulary

    sentences = [s.split() for s in ("the dog saw the cat", "a cat", "the bird saw a dog and the cat", "dog")]
    vocab = Vocabulary.build(sentences, min_count=1, max_size=100)

    def train(steps=3):
        torch.manual_seed(8)
        model = BiLmLanguageModel(options_from_dict(TINY_OPTIONS), len(vocab), [4], dropout=0.1)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        rows = rows_of_input_gemm(model.bilm.forward_layers[0])
        char_ids, word_ids = batch_to_ids(sentences), word_id_batch(sentences, vocab)
        lengths = (char_ids[:, :, 0] > 0).sum(dim=1)
        losses = []
        for _ in range(steps):
            types = model.bilm.token_types(add_sentence_boundaries(char_ids, lengths, 50))
            top = model.bilm.run_lstms(types.embeddings(), lengths + 2, types=types)[-1]
            out = model.top_layer_nll(top, word_ids)
            loss = (out["forward_nll"] + out["backward_nll"]) / (2 * out["targets"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert rows == [10] * steps  # 7 words, <S>, </S>, padding: 10 (24 positions)
        return losses, [p.detach().clone() for p in model.parameters()]

    (losses, weights), (again, weights_again) = train(), train()
    assert losses == again and losses[-1] < losses[0]
    assert all(torch.equal(a, b) for a, b in zip(weights, weights_again))
