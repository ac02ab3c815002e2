"""The training (autograd) path of one direction of one biLM LSTM layer, as one autograd Function.

Same math as ``ProjectedLstmLayer.cell`` stepped over time (TF gate order ``i, j, f, o``, the
forget bias folded into the input bias, cell and projection clipping), but autograd records one
node per layer and direction instead of a dozen per time step:

  * forward: the same per-step recurrence, into buffers made once per call (nothing is allocated
    per step): the recurrent GEMM accumulates onto the step's input gates (``addmm_``), which are
    then activated in place and kept for the backward pass;
  * backward: the reverse-time recursion does per step only what the recurrence needs: two small
    GEMMs (``dp = dh W_proj``, ``dh_prev = d_gates W_state``) and the pointwise gate derivatives.
    The weight gradients are one GEMM each over all positions after the loop, and the gradient
    of the input gates is returned for all positions at once, so autograd's backward of the input
    GEMM (``input_linear``) is batched too (in the first layer over the batch's distinct words,
    not its positions: :func:`input_gates`).

Both tanh are taken as ``2 sigmoid(2x) - 1``, as in the in-place inference step (the CPU's tanh is
several times slower than its sigmoid); against the per-step path's ``torch.tanh`` this moves
results by float rounding only (tests/test_lstm_autograd.py).

Layout. Rows are sorted by length, so the rows a step updates are a prefix of the batch that
shrinks (forward direction) or grows (backward direction) over the executed steps ``k = 0..S-1``
(``n_k`` rows at step ``k``). The gate rows (input gates, activations, their gradients) are the
real positions packed in execution order: step ``k`` owns ``n_k`` consecutive rows. The state
buffers ``H`` (projected ``h``) and ``C`` (clipped ``c``) are blocks ``b = -1..S-1``: block
``b >= 0`` holds step ``b``'s new state in its first ``n_b`` rows, followed by the initial state of
the rows that start at step ``b + 1`` (growing direction only); block ``-1`` holds the initial state
of the rows that start at step 0. Step ``k`` therefore reads its previous state as the first
``n_k`` rows of block ``k - 1``: every per-step operand is a contiguous slice.

Autocast (CPU bf16): the GEMMs run in the autocast dtype, as in the per-step path (the input gates
arrive in it from ``input_linear``; ``h``, the saved activations and the gradients that feed GEMMs
are kept in it); the pointwise math runs in fp32 and the cell state is kept in fp32 in every
layer (the per-step path kept it in the initial state's dtype, bf16 from the second layer on,
where the initial state is made like the bf16 input). The Function runs with autocast off and
casts explicitly.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

#: Switch for tests and benchmarks: ``False`` sends training through the per-step autograd loop.
enabled = True


def applies(layer) -> bool:
    """Whether :func:`layer_forward` can run ``layer``: plain weights (not int8-quantised modules)
    and the stock pointwise math (not a :func:`~elmo_core.lstm.fuse_cells` replacement)."""
    return enabled and layer._plain_linears()


class Layout(NamedTuple):
    """Row bookkeeping of one call (see the module docstring): Python ints and index tensors."""

    rows: list[int]  # n_k, the rows step k updates
    gate_start: list[int]  # first gate row of step k; the total at the end
    block_start: list[int]  # first state row of block b at index b + 1 (b = -1..S-1); the total at the end
    gate_index: torch.Tensor  # (positions,) flat (batch * total_steps) input position of each gate row
    previous_rows: torch.Tensor  # (positions,) the state row each gate row's step reads
    output_rows: torch.Tensor  # the state rows that are step outputs ...
    output_positions: torch.Tensor  # ... and their flat output position, original row order
    initial_rows: torch.Tensor  # (batch,) the state row of each sorted row's initial state
    final_rows: torch.Tensor  # (batch,) the state row of each sorted row's final state


def layout(active: list[int], steps, order: torch.Tensor, total_steps: int) -> Layout:
    """The rows of one call: ``order`` sorts the batch by length (longest first), ``active[t]``
    rows run at time ``t``, the time steps run in the order ``steps``."""
    times = list(steps)
    rows = [active[t] for t in times]
    count = len(rows)
    gate_start = [0]
    for n in rows:
        gate_start.append(gate_start[-1] + n)
    sizes = [rows[0]] + [max(rows[k], rows[k + 1]) for k in range(count - 1)] + [rows[-1]]
    block_start = [0]
    for size in sizes:
        block_start.append(block_start[-1] + size)
    device = order.device
    arange = torch.arange(max(gate_start[-1], block_start[-1]), device=device)
    rows_t = torch.tensor(rows, device=device)
    times_t = torch.tensor(times, device=device)
    # Gate rows: step k's row r at gate_start[k] + r, reading state row block_start[k] + r.
    step = torch.repeat_interleave(torch.arange(count, device=device), rows_t)
    within = arange[: gate_start[-1]] - torch.tensor(gate_start[:-1], device=device)[step]
    gate_index = order[within] * total_steps + times_t[step]
    previous_rows = torch.tensor(block_start[:-2], device=device)[step] + within
    # State rows: block b (index b + 1) holds step b's outputs in its first n_b rows (none in
    # block -1), then initial states.
    block = torch.repeat_interleave(torch.arange(count + 1, device=device), torch.tensor(sizes, device=device))
    within = arange[: block_start[-1]] - torch.tensor(block_start[:-1], device=device)[block]
    is_output = within < torch.tensor([0, *rows], device=device)[block]
    output_rows = is_output.nonzero().squeeze(1)
    output_positions = (
        order[within[output_rows]] * total_steps + torch.tensor([0, *times], device=device)[block[output_rows]]
    )
    batch = order.shape[0]
    initial = (~is_output).nonzero().squeeze(1)
    initial_rows = torch.empty(batch, dtype=torch.long, device=device)
    initial_rows[within[initial]] = initial
    # A row's final state: an output the next step does not read (n_{b+1} <= r).
    final = (is_output & (within >= torch.tensor([*rows, 0], device=device)[block])).nonzero().squeeze(1)
    final_rows = torch.empty(batch, dtype=torch.long, device=device)
    final_rows[within[final]] = final
    return Layout(
        rows,
        gate_start,
        block_start,
        gate_index,
        previous_rows,
        output_rows,
        output_positions,
        initial_rows,
        final_rows,
    )


def layer_forward(layer, inputs, h0, c0, order, restore, active, steps, total_steps, by_type=None):
    """``ProjectedLstmLayer.forward``'s autograd branch. ``h0``/``c0`` are the initial states in
    sorted row order, ``order``/``restore`` sort and unsort the batch, ``active``/``steps`` and
    ``by_type`` as there. Returns the padded outputs and the final ``(h, c)``, in the original row
    order."""
    batch = inputs.shape[0]
    plan = layout(active, steps, order, total_steps)
    gates = input_gates(layer, inputs, plan.gate_index, by_type)
    h, c, _ = LstmSequence.apply(
        gates, h0, c0, layer.state_linear.weight, layer.projection.weight, plan, layer.cell_clip, layer.proj_clip
    )
    padded = h.new_zeros(batch * total_steps, h.shape[1])
    padded = padded.index_copy(0, plan.output_positions, h.index_select(0, plan.output_rows))
    final = plan.final_rows[restore]
    # The final cell state in the dtype the per-step path gave it (see the module docstring).
    c_final = c.index_select(0, final).to(torch.promote_types(gates.dtype, c0.dtype))
    return padded.view(batch, total_steps, -1), (h.index_select(0, final), c_final)


def input_gates(layer, inputs, gate_index, by_type=None):
    """``x W_in + b`` of the packed positions: ``inputs (batch, time, input_dim)`` and
    ``gate_index (positions,)`` into its flattened first two dimensions -> ``(positions, 4*cell)``.

    With ``by_type = (vectors (n_types, input_dim), index (batch, time))`` (``inputs ==
    vectors[index]``; the first layer, whose inputs are its words' vectors) and fewer types than
    positions, the GEMM runs once per type and its rows are gathered to the positions: the
    gather's backward sums each type's gradients (exactly what the GEMM's backward over
    repeated rows would sum, in another order), and the weight and input gradients then take one
    GEMM over the types instead of the positions. ``inputs`` is then not used, so no gradient
    reaches it. Under bf16 autocast the gathered gates are bf16: the gather's backward
    (``index_add_``) sums bf16 gradients in fp32 and rounds each type's sum once (a word such as
    ``<S>`` recurs in every row, and bf16 running sums would stall)."""
    if by_type is not None and by_type[0].shape[0] < gate_index.shape[0]:
        vectors, index = by_type
        return layer.input_gates(vectors).index_select(0, index.reshape(-1).index_select(0, gate_index))
    return layer.input_gates(inputs.reshape(-1, inputs.shape[2]).index_select(0, gate_index))


class LstmSequence(torch.autograd.Function):
    """``(gates (positions, 4*cell), h0 (batch, proj), c0 (batch, cell), W_state (4*cell, proj),
    W_proj (proj, cell), layout, cell_clip, proj_clip)`` -> ``H (state rows, proj)``, ``C (state
    rows, cell)`` and ``gates`` itself, activated in place (the module docstring has the rows)."""

    @staticmethod
    def forward(ctx, gates, h0, c0, w_state, w_proj, plan: Layout, cell_clip, proj_clip):
        with torch.autocast(gates.device.type, enabled=False):
            return _forward(ctx, gates, h0, c0, w_state, w_proj, plan, cell_clip, proj_clip)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h, grad_c, grad_act):
        with torch.autocast(ctx.device_type, enabled=False):
            return _backward(ctx, grad_h, grad_c)


def _forward(ctx, gates, h0, c0, w_state, w_proj, plan, cell_clip, proj_clip):
    ctx.set_materialize_grads(False)
    dtype = gates.dtype  # of the GEMMs, h and the saved activations (the autocast dtype under autocast)
    math = _math_dtype(dtype)
    state_dtype = torch.promote_types(math, c0.dtype)  # the cell state's
    cell, proj = w_proj.shape[1], w_proj.shape[0]
    w_state, w_proj = w_state.to(dtype), w_proj.to(dtype)
    w_state_t, w_proj_t = w_state.t(), w_proj.t()
    rows, start, gate_start = plan.rows, plan.block_start, plan.gate_start
    total, positions = start[-1], gate_start[-1]
    h = gates.new_empty(total, proj)
    c = gates.new_empty(total, cell, dtype=state_dtype)
    h.index_copy_(0, plan.initial_rows, h0.to(dtype))
    c.index_copy_(0, plan.initial_rows, c0.to(state_dtype))
    act = gates  # activated in place, step by step: sigmoid(i), tanh(j), sigmoid(f), sigmoid(o)
    ctx.mark_dirty(gates)
    tanh_c = gates.new_empty(positions, cell, dtype=state_dtype)
    pre_proj = gates.new_empty(total, cell)
    pre_proj.index_fill_(0, plan.initial_rows, 0)  # rows that are no step's output: 0 (dW_proj GEMM)
    raw_c = gates.new_empty(positions, cell, dtype=state_dtype) if cell_clip is not None else None
    raw_h = gates.new_empty(total, proj) if proj_clip is not None else None
    # A reduced-precision GEMM dtype (bf16 autocast): the pointwise math runs in fp32 on a copy of
    # each step's gates (torch's mixed-dtype pointwise kernels are ~2x slower than same-dtype ones).
    in_math = None if dtype == math else gates.new_empty(max(rows), 4 * cell, dtype=math)
    for k, n in enumerate(rows):
        g0, p0, o0 = gate_start[k], start[k], start[k + 1]  # gate rows, previous and new state rows
        a = act[g0 : g0 + n].addmm_(h[p0 : p0 + n], w_state_t)
        a_m = a if in_math is None else in_math[:n].copy_(a)
        si, tj, sf, so = a_m[:, :cell], a_m[:, cell : 2 * cell], a_m[:, 2 * cell : 3 * cell], a_m[:, 3 * cell :]
        # tanh(x) = 2 sigmoid(2x) - 1 (the CPU's tanh is several times slower than its sigmoid)
        tj.mul_(2)
        a_m.sigmoid_()
        tj.mul_(2).sub_(1)
        if in_math is not None:
            a.copy_(a_m)
        c_new = c[o0 : o0 + n] if cell_clip is None else raw_c[g0 : g0 + n]
        torch.mul(sf, c[p0 : p0 + n], out=c_new).addcmul_(si, tj)
        if cell_clip is not None:
            torch.clamp(c_new, -cell_clip, cell_clip, out=c[o0 : o0 + n])
        t_c = torch.mul(c[o0 : o0 + n], 2, out=tanh_c[g0 : g0 + n]).sigmoid_().mul_(2).sub_(1)
        p = torch.mul(t_c, so, out=pre_proj[o0 : o0 + n])
        if proj_clip is None:
            torch.mm(p, w_proj_t, out=h[o0 : o0 + n])
        else:
            torch.clamp(torch.mm(p, w_proj_t, out=raw_h[o0 : o0 + n]), -proj_clip, proj_clip, out=h[o0 : o0 + n])
    ctx.save_for_backward(act, tanh_c, pre_proj, h, c, raw_c, raw_h, w_state, w_proj)
    ctx.plan = plan
    ctx.dtypes = (h0.dtype, c0.dtype, gates.dtype)
    ctx.device_type = gates.device.type
    return h, c, act


def _backward(ctx, grad_h, grad_c):
    act, tanh_c, pre_proj, h, c, raw_c, raw_h, w_state, w_proj = ctx.saved_tensors
    plan = ctx.plan
    rows, start, gate_start = plan.rows, plan.block_start, plan.gate_start
    cell, proj = w_proj.shape[1], w_proj.shape[0]
    dtype, math = h.dtype, _math_dtype(h.dtype)
    most = max(rows)
    device = h.device
    # Gradients flowing into each state row, accumulated in place over the reverse-time loop.
    d_h = torch.zeros_like(h) if grad_h is None else grad_h.to(dtype, copy=True)
    d_c = torch.zeros_like(c) if grad_c is None else grad_c.to(c.dtype, copy=True)
    d_gates = torch.empty_like(act)
    d_p = torch.empty(most, cell, dtype=dtype, device=device)
    factor = torch.empty(most, cell, dtype=c.dtype, device=device)
    keep = torch.empty(most, max(cell, proj), dtype=torch.bool, device=device)
    one = torch.ones((), dtype=math, device=device)
    reduced = dtype != math  # then the pointwise math runs in fp32 copies (see _forward)
    if reduced:
        act_m = torch.empty(most, 4 * cell, dtype=math, device=device)
        d_gates_m = torch.empty(most, 4 * cell, dtype=math, device=device)
        d_p_m = torch.empty(most, cell, dtype=math, device=device)
    for k in range(len(rows) - 1, -1, -1):
        n = rows[k]
        g0, p0, o0 = gate_start[k], start[k], start[k + 1]
        a = act[g0 : g0 + n] if not reduced else act_m[:n].copy_(act[g0 : g0 + n])
        si, tj, sf, so = a[:, :cell], a[:, cell : 2 * cell], a[:, 2 * cell : 3 * cell], a[:, 3 * cell :]
        t_c = tanh_c[g0 : g0 + n]
        dh = d_h[o0 : o0 + n]
        if raw_h is not None:
            # Clamp's gradient passes where lo <= x <= hi (torch.clamp's backward), i.e. exactly
            # where clamping left the value unchanged (NaN included: no gradient either way).
            dh.mul_(torch.eq(raw_h[o0 : o0 + n], h[o0 : o0 + n], out=keep[:n, :proj]))
        dp = torch.mm(dh, w_proj, out=d_p[:n])
        if reduced:
            dp = d_p_m[:n].copy_(dp)
        # dc += dp * s_o (1 - tanh(c)^2)
        dc = d_c[o0 : o0 + n].addcmul_(dp, torch.addcmul(one, t_c, t_c, value=-1, out=factor[:n]).mul_(so))
        if raw_c is not None:
            dc.mul_(torch.eq(raw_c[g0 : g0 + n], c[o0 : o0 + n], out=keep[:n, :cell]))
        # Gate derivatives: s (1 - s) for the sigmoids, 1 - tanh^2 for j, times
        # (tanh j, s_i, c_prev) * dc for i, j, f and tanh(c) * dp for o.
        dg = torch.addcmul(a, a, a, value=-1, out=d_gates[g0 : g0 + n] if not reduced else d_gates_m[:n])
        torch.addcmul(one, tj, tj, value=-1, out=dg[:, cell : 2 * cell])
        dg[:, :cell].mul_(tj)
        dg[:, cell : 2 * cell].mul_(si)
        dg[:, 2 * cell : 3 * cell].mul_(c[p0 : p0 + n])
        dg[:, 3 * cell :].mul_(t_c).mul_(dp)
        dg[:, : 3 * cell].view(n, 3, cell).mul_(dc.unsqueeze(1))
        if reduced:
            dg = d_gates[g0 : g0 + n].copy_(dg)
        d_c[p0 : p0 + n].addcmul_(dc, sf)
        d_h[p0 : p0 + n].addmm_(dg, w_state)
    h0_dtype, c0_dtype, gates_dtype = ctx.dtypes
    needs = ctx.needs_input_grad
    d_w_state = h.index_select(0, plan.previous_rows).t().mm(d_gates).t() if needs[3] else None
    # d_h over the state rows: the projection's (clip-masked) gradient on step outputs; on the
    # initial-state rows it is dh0, but pre_proj is zero there.
    d_w_proj = d_h[start[1] :].t().mm(pre_proj[start[1] :]) if needs[4] else None
    d_h0 = d_h.index_select(0, plan.initial_rows).to(h0_dtype) if needs[1] else None
    d_c0 = d_c.index_select(0, plan.initial_rows).to(c0_dtype) if needs[2] else None
    d_gates = d_gates.to(gates_dtype) if needs[0] else None
    return d_gates, d_h0, d_c0, d_w_state, d_w_proj, None, None, None


def _math_dtype(dtype: torch.dtype) -> torch.dtype:
    """The pointwise math's dtype for GEMMs in ``dtype``: fp32 for the reduced-precision ones."""
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype
