"""The biLM's LSTM layer with a projection, cell clipping and projection clipping.

One direction of one layer. TensorFlow's ``LSTMCell(num_proj=...)`` semantics, gates in TF order
``i, j, f, o`` (j = candidate); the forget bias of 1.0 that TF adds at run time is folded into
``bias`` when weights are loaded (and taken out again when they are saved).

Fast path (same math as a per-step loop over every row, see ``reference.py``):
  * the input half of the gate pre-activations is computed for many time steps at once, on the
    real positions only (packed; padding costs nothing), or once per distinct input where the
    caller names them (``by_type``: the first layer, whose inputs are word vectors): one GEMM with
    autograd, and a GEMM per chunk of >= 512 rows into reused memory without (``_run_in_place``;
    256-row GEMMs through oneDNN's packed weight where the weights are large, ``onednn.py``);
  * rows are sorted by length so the rows still running form a prefix that shrinks (forward) or
    grows (backward) over time: no work is spent on padding;
  * without autograd (inference) the step runs in place: the recurrent GEMM adds onto the step's
    input gates (``addmm_`` into them; on the CPU in fp32 with a large recurrent weight, oneDNN's
    linear with a weight packed once), the pointwise math reads them (in one pass, where the
    kernel of ``fused_cell.py`` applies: the eager ops' bits), and ``h``/``c`` and the
    pre-projection live in buffers made once per call, whose running prefix each step updates.
"""

from __future__ import annotations

import warnings
from itertools import accumulate
from typing import NamedTuple

import torch
from torch import nn

from .errors import BackboneUsageError
from .fused_cell import Kernel as FusedCell
from .fused_cell import eager_cell_update
from .fused_cell import kernel as fused_cell_kernel
from .lstm_autograd import applies as sequence_function_applies
from .lstm_autograd import layer_forward as sequence_function_forward
from .onednn import available as onednn_available
from .onednn import linear as onednn_linear
from .onednn import linear_add, pack_weight
from .workspace import scratch


def cell_elementwise(
    gates: torch.Tensor, c: torch.Tensor, cell_clip: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cell's pointwise math: ``gates (n, 4*cell)``, ``c (n, cell)`` -> (pre-projection h, new c)."""
    i, j, f, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(j)
    if cell_clip is not None:
        c = c.clamp(-cell_clip, cell_clip)
    return torch.sigmoid(o) * torch.tanh(c), c


_fused_elementwise: dict[str, object] = {}
FUSE_METHODS = ("compile", "script")


def fuse_cells(module: nn.Module, method: str = "compile") -> int:
    """Fuse the pointwise cell math of every LSTM layer in ``module``: ``"compile"`` with
    ``torch.compile`` (dynamic batch size), ``"script"`` with TorchScript. Returns the number of
    layers changed. Opt-in: neither beats the default in-place step on this project's CPU
    (docs/benchmarks.md), and compilation costs seconds to tens of seconds."""
    if method not in FUSE_METHODS:
        raise BackboneUsageError(f"fuse method must be one of {', '.join(FUSE_METHODS)}, got {method!r}")
    if method not in _fused_elementwise:
        if method == "compile":
            _fused_elementwise[method] = torch.compile(cell_elementwise, dynamic=True)
        else:
            with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.x; it still works
                warnings.simplefilter("ignore", DeprecationWarning)
                _fused_elementwise[method] = torch.jit.script(cell_elementwise)
    layers = [m for m in module.modules() if isinstance(m, ProjectedLstmLayer)]
    for layer in layers:
        layer.elementwise = _fused_elementwise[method]
    return len(layers)


class ProjectedLstmLayer(nn.Module):
    """One direction of one biLM layer.

    Args:
        input_dim: width of the inputs.
        cell_dim: LSTM cell size (``lstm.dim``).
        projection_dim: width of the projected hidden state (``lstm.projection_dim``).
        cell_clip, proj_clip: clip values, ``None`` for no clipping.
        go_forward: ``False`` reads each sequence from its last valid token back to the first.
    """

    def __init__(
        self,
        input_dim: int,
        cell_dim: int,
        projection_dim: int,
        cell_clip: float | None,
        proj_clip: float | None,
        go_forward: bool,
    ):
        super().__init__()
        self.input_dim, self.cell_dim, self.projection_dim = input_dim, cell_dim, projection_dim
        self.cell_clip, self.proj_clip, self.go_forward = cell_clip, proj_clip, go_forward
        # nn.Linear modules (not raw parameters) so dynamic int8 quantisation can replace them.
        self.input_linear = nn.Linear(input_dim, 4 * cell_dim)  # its bias includes TF's forget bias
        self.state_linear = nn.Linear(projection_dim, 4 * cell_dim, bias=False)
        self.projection = nn.Linear(cell_dim, projection_dim, bias=False)
        self.elementwise = cell_elementwise
        # CPU fp32 inference: the recurrent and input GEMMs through oneDNN with weights packed
        # once (onednn.py): None = when the recurrent weight has PACKED_RECURRENT_MIN_BYTES or
        # more, True / False = always / never (benchmarks/backbone_ablation.py flips it)
        self.prepacked_weights: bool | None = None
        # The in-place step's pointwise math in one pass (fused_cell.py; same bits as the eager
        # ops): None = where it applies with one thread per direction, True = with any thread
        # count, False = never (benchmarks/backbone_ablation.py flips it)
        self.fused_pointwise: bool | None = None
        self._weights: InPlaceWeights | None = None  # see _in_place_weights
        self._weights_key: tuple | None = None
        self.reset_parameters()

    def __getstate__(self) -> dict:
        # copy.deepcopy / torch.save of a model that has run: the in-place step's weights are a
        # cache made from the parameters, and oneDNN's packed tensors have no storage to copy
        # (NotImplementedError), so a copy leaves them out and makes its own on its first call.
        state = super().__getstate__()
        state["_weights"] = state["_weights_key"] = None
        return state

    def reset_parameters(self) -> None:
        bound = 1.0 / self.cell_dim**0.5
        for linear in (self.input_linear, self.state_linear, self.projection):
            nn.init.uniform_(linear.weight, -bound, bound)
        with torch.no_grad():
            self.input_linear.bias.zero_()
            self.input_linear.bias[2 * self.cell_dim : 3 * self.cell_dim] = 1.0  # TF forget bias

    def cell(self, gate_input: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step for ``n`` rows: ``gate_input (n, 4*cell)`` already holds ``x W_in + b``."""
        pre_projection, c = self.elementwise(gate_input + self.state_linear(h), c, self.cell_clip)
        h = self.projection(pre_projection)
        if self.proj_clip is not None:
            h = h.clamp(-self.proj_clip, self.proj_clip)
        return h, c

    def forward(
        self,
        inputs: torch.Tensor,
        lengths: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        by_type: tuple[torch.Tensor, torch.Tensor] | None = None,
        boundaries: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run the layer over a padded batch.

        Args:
            inputs: ``(batch, time, input_dim)``; positions past a row's length are ignored.
            lengths: ``(batch,)`` long, each >= 1.
            state: initial ``(h (batch, projection_dim), c (batch, cell_dim))``; zeros if ``None``.
            by_type: optional ``(vectors (n_types, input_dim), index (batch, time))`` with
                ``inputs == vectors[index]``: the input GEMM then runs once per distinct input (a
                word's layer-0 vector) instead of once per position, when there are fewer (not in
                the per-step fallback); with autograd the gradient goes to ``vectors``, not ``inputs``.
            boundaries: optional ``(k, 2)`` long ``(row, position)`` pairs, each ``0 < position <
                length``: an independent sequence starts there (rows packed with several sentences,
                ``row_packing.py``), so the state is zeroed between the two, whichever the
                direction. Inference on the in-place path only.
        Returns:
            outputs ``(batch, time, projection_dim)`` (zeros past each length) and the final state
            of every row (after its last valid token forward, after its first token backward).
        """
        batch, total_steps, _ = inputs.shape
        if state is None:
            h0 = inputs.new_zeros(batch, self.projection_dim)
            c0 = inputs.new_zeros(batch, self.cell_dim)
        else:
            h0, c0 = state
        sorted_lengths, order = torch.sort(lengths, descending=True)
        restore = torch.empty_like(order)
        restore[order] = torch.arange(batch, device=order.device)
        length_list = sorted_lengths.tolist()
        max_len = length_list[0]
        h, c = h0[order], c0[order]
        # active[t] = number of rows whose length exceeds t (a prefix, since rows are sorted).
        active = [0] * max_len
        for length in length_list:
            active[length - 1] += 1
        for t in range(max_len - 2, -1, -1):
            active[t] += active[t + 1]
        # Gate pre-activations from the inputs, for every real (non-padding) position (one GEMM, or
        # one per chunk of steps): the positions are packed time-major, step t's rows being the
        # sorted prefix active[t].
        time_major = inputs[order, :max_len].transpose(0, 1)
        real = sorted_lengths[None, :] > torch.arange(max_len, device=inputs.device)[:, None]
        steps = range(max_len) if self.go_forward else range(max_len - 1, -1, -1)
        in_place = not torch.is_grad_enabled() and self._plain_linears()
        resets = None
        if boundaries is not None and boundaries.numel():
            if not in_place:
                raise BackboneUsageError(
                    "sequence boundaries inside rows work in inference only (torch.no_grad(), float or bf16 weights)"
                )
            resets = self._resets(boundaries, restore)
        if in_place:
            weights = self._in_place_weights(inputs.device.type)
            if by_type is not None and by_type[0].shape[0] < sum(active):
                vectors, index = by_type
                source = GateSource(vectors, index[order, :max_len].transpose(0, 1)[real])
            else:
                source = GateSource(time_major[real], None)
            padded, h, c = self._run_in_place(source, weights, h, c, active, steps, total_steps, resets)
            return padded[restore], (h[restore], c[restore])
        if sequence_function_applies(self):  # one autograd node for the whole sequence: lstm_autograd.py
            return sequence_function_forward(self, inputs, h, c, order, restore, active, steps, total_steps, by_type)
        # Fallback (quantised or compiled cells): one tensor per step (split, not slicing inside the
        # loop: that would make autograd build a full-size gradient for every step, O(time^2) in the
        # backward pass).
        gate_steps = self.input_gates(time_major[real]).split(active)
        outputs: list[torch.Tensor] = [None] * max_len  # type: ignore[list-item]
        for t in steps:
            n = active[t]
            h_new, c_new = self.cell(gate_steps[t], h[:n], c[:n])
            outputs[t] = h_new
            if n == batch:
                h, c = h_new, c_new
            else:
                h, c = torch.cat([h_new, h[n:]]), torch.cat([c_new, c[n:]])
        padded = torch.stack([nn.functional.pad(o, (0, 0, 0, batch - o.shape[0])) for o in outputs], dim=1)
        if max_len < total_steps:
            padded = nn.functional.pad(padded, (0, 0, 0, total_steps - max_len))
        return padded[restore], (h[restore], c[restore])

    def _resets(self, boundaries: torch.Tensor, restore: torch.Tensor) -> dict[int, torch.Tensor]:
        """``{step: sorted rows}`` whose state is zeroed before that step: forward at a boundary's
        position (the new sequence's first), backward one before it (the earlier sequence's last,
        which the backward pass reaches next)."""
        rows = restore.cpu()[boundaries[:, 0]]
        steps = boundaries[:, 1] if self.go_forward else boundaries[:, 1] - 1
        device = restore.device
        return {int(t): rows[steps == t].to(device) for t in torch.unique(steps).tolist()}

    def recurrent_weight_is_large(self) -> bool:
        """True when the recurrent weight has :data:`PACKED_RECURRENT_MIN_BYTES` or more (fp32):
        what ``prepacked_weights=None`` packs for oneDNN."""
        return self.state_linear.weight.numel() * 4 >= PACKED_RECURRENT_MIN_BYTES

    def _plain_linears(self) -> bool:
        """True when the recurrent weights are ordinary tensors (not int8-quantised modules) and
        the pointwise math is ours (not a compiled replacement), so the in-place step applies."""
        return (
            self.elementwise is cell_elementwise
            and type(self.state_linear) is nn.Linear
            and type(self.projection) is nn.Linear
        )

    def input_gates(
        self, packed: torch.Tensor, weights: InPlaceWeights | None = None, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x W_in + b`` for ``packed (positions, input_dim)`` -> ``(positions, 4 * cell)``; with
        the in-place step's ``weights`` the candidate block comes out doubled (see there), into
        ``out`` when given (same numbers as ``nn.functional.linear``, which calls ``addmm``; with a
        packed input weight, oneDNN's numbers, within float rounding of those)."""
        if weights is None:
            return self.input_linear(packed)
        if weights.input_packed is not None:  # oneDNN, a few hundred rows per call (_PACKED_CHUNK_ROWS)
            if out is None:
                out = packed.new_empty(packed.shape[0], weights.bias.shape[0])
            for lo in range(0, packed.shape[0], _PACKED_CHUNK_ROWS):
                hi = min(lo + _PACKED_CHUNK_ROWS, packed.shape[0])
                out[lo:hi] = onednn_linear(packed[lo:hi], weights.input_packed, weights.bias)
            return out
        if out is None:
            return nn.functional.linear(packed, weights.input, weights.bias)
        return torch.addmm(weights.bias, packed.to(weights.input.dtype), weights.input.t(), out=out)

    def _in_place_weights(self, device_type: str) -> InPlaceWeights:
        """The weights of the in-place step, made once per weight version (and autocast dtype).

        The candidate (``j``) rows of the input and recurrent weights and the bias are doubled:
        ``tanh(x) = 2 sigmoid(2x) - 1``, so one sigmoid over all four gates replaces three sigmoids
        and a tanh (the CPU's vectorised tanh is several times slower than its sigmoid). Doubling
        is exact in floating point, so the GEMMs give exactly twice the usual pre-activations."""
        dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
        tensors = (self.input_linear.weight, self.input_linear.bias, self.state_linear.weight, self.projection.weight)
        wanted = self.prepacked_weights
        prepack = (
            (self.recurrent_weight_is_large() if wanted is None else wanted)
            and dtype is None
            and tensors[0].dtype == torch.float32  # not a float64 model (benchmarks/fp32_rounding.py)
            and tensors[0].device.type == "cpu"
            and onednn_available()
        )
        key = (dtype, prepack, *((t.data_ptr(), t._version) for t in tensors))
        if self._weights_key != key:
            cell = self.cell_dim
            scale = torch.ones(4 * cell, 1, device=tensors[0].device)
            scale[cell : 2 * cell] = 2.0
            w_in, b_in, w_rec, w_proj = (t.detach() for t in tensors)
            recurrent, input_weight = _cast(w_rec * scale, dtype), _cast(w_in * scale, dtype)
            self._weights = InPlaceWeights(
                input=None if prepack else input_weight,
                bias=_cast(b_in * scale[:, 0], dtype),
                recurrent=None if prepack else recurrent.t(),
                projection=_cast(w_proj, dtype).t(),
                recurrent_packed=pack_weight(recurrent) if prepack else None,
                input_packed=pack_weight(input_weight) if prepack else None,
            )
            self._weights_key = key
        return self._weights

    def _fused_cell(self, buffer_dtype: torch.dtype, state_dtype: torch.dtype, device_type: str) -> FusedCell | None:
        """The one-pass pointwise kernel (``fused_cell.py``, the same bits as the eager ops) where
        it applies: fp32 on the CPU, a cell size it takes, and (unless ``fused_pointwise`` is True)
        one thread for this direction, since the eager ops split large tensors over several."""
        if self.fused_pointwise is False or (self.fused_pointwise is None and torch.get_num_threads() != 1):
            return None
        if not (buffer_dtype == state_dtype == torch.float32 and device_type == "cpu"):
            return None
        kernel = fused_cell_kernel()
        return kernel if kernel is not None and self.cell_dim % kernel.cell_multiple == 0 else None

    def _run_in_place(
        self,
        source: GateSource,
        weights: InPlaceWeights,
        h: torch.Tensor,
        c: torch.Tensor,
        active: list[int],
        steps,
        total_steps: int,
        resets: dict[int, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The step loop without autograd; same math as :meth:`cell`. ``h``/``c`` are the sorted
        initial states (fresh copies, so updating them in place is safe); ``resets`` names the
        sorted rows whose state is zeroed before a step (:meth:`_resets`). Returns the sorted
        padded outputs ``(batch, total_steps, proj)`` and the final ``h``, ``c``.

        The input gates of the packed positions are made a chunk of consecutive steps at a time
        (:func:`_gate_chunks`) into this thread's reused scratch tensor (``workspace.py``): fresh
        memory for all of them at once costs a page fault per 4 KiB on every call, and a chunk
        (8 MB on "small") is still in the L3 cache when its steps read it. With ``type_index``
        the gates of each distinct input are computed first (into the same scratch tensor) and
        gathered chunk by chunk. The recurrent GEMM adds onto the step's slice of the chunk (no
        longer needed after it): in place with ``addmm_``, or, with oneDNN's packed weight, into
        one new tensor per step (oneDNN's linear has no ``out=``; still faster, see ``onednn.py``).
        The rest goes into buffers made once. The candidate gate arrives doubled
        (:meth:`_in_place_weights`) and both tanh are taken as ``2 sigmoid(2x) - 1`` (equal to
        ``tanh`` up to float rounding); that pointwise math runs in one pass where the fused
        kernel applies (:meth:`_fused_cell`), with the eager ops' bits."""
        batch = h.shape[0]
        # Under autocast the GEMMs run in the autocast dtype: h (a GEMM input) is kept in it, while
        # the cell state keeps the input's precision, as in the autograd path (fp16 * fp32 -> fp32).
        dtype = weights.projection.dtype
        h, c = h.to(dtype).contiguous(), c.contiguous()
        outputs = h.new_zeros(batch, total_steps, self.projection_dim)
        pre_projection = c.new_empty(batch, self.cell_dim)
        width = 4 * self.cell_dim
        fused = self._fused_cell(buffer_dtype=dtype, state_dtype=c.dtype, device_type=h.device.type)
        chunk_limit = _CHUNK_ROWS if weights.input_packed is None else _PACKED_CHUNK_ROWS
        chunks = _gate_chunks(active, steps, max(max(active), chunk_limit))
        chunk_rows = max(hi - lo for lo, hi in chunks.values())
        n_types = 0 if source.type_index is None else source.inputs.shape[0]
        space = scratch((n_types + chunk_rows) * width, dtype, h.device)
        buffer = space[n_types * width :].view(chunk_rows, width)
        if n_types:  # the gates of each distinct input, gathered chunk by chunk
            type_gates = self.input_gates(source.inputs, weights, space[: n_types * width].view(n_types, width))
        first = _step_offsets(active)  # first packed row of each step
        lo = 0
        for t in steps:
            n = active[t]
            if t in chunks:
                lo, hi = chunks[t]
                if n_types:
                    torch.index_select(type_gates, 0, source.type_index[lo:hi], out=buffer[: hi - lo])
                else:
                    self.input_gates(source.inputs[lo:hi], weights, buffer[: hi - lo])
            row = first[t] - lo
            if resets is not None and t in resets:  # a new sentence starts in these rows
                h.index_fill_(0, resets[t], 0.0)
                c.index_fill_(0, resets[t], 0.0)
            if weights.recurrent_packed is None:
                gates = buffer[row : row + n].addmm_(h[:n], weights.recurrent)
            else:  # a new tensor: oneDNN's linear has no out=
                gates = linear_add(h[:n], weights.recurrent_packed, buffer[row : row + n])
            c_n, p_n = c[:n], pre_projection[:n]
            if fused is not None:
                fused.update(gates, c_n, p_n, self.cell_clip)
            else:
                eager_cell_update(gates, c_n, p_n, self.cell_clip)
            h_n = torch.mm(p_n.to(dtype), weights.projection, out=h[:n])
            if self.proj_clip is not None:
                h_n.clamp_(-self.proj_clip, self.proj_clip)
            outputs[:n, t] = h_n
        return outputs, h, c


class GateSource(NamedTuple):
    """The in-place step's inputs: ``inputs (positions, input_dim)`` packed time-major (step t's
    rows are the sorted prefix), or, with ``type_index (positions,)``, ``inputs (n_types,
    input_dim)`` whose gates are computed once each and gathered by ``type_index``."""

    inputs: torch.Tensor
    type_index: torch.Tensor | None


# The smallest recurrent weight (fp32 bytes) whose GEMM goes through oneDNN's packed weight: MKL
# re-packs the weight on every call, which costs memory traffic once the weight leaves the cache,
# so oneDNN pays at 8 and 32 MB; at 2 MB ("small", the shipped default) runs went either way,
# so the default keeps MKL and its numbers bit for bit. Measurements: docs/benchmarks.md, issue #17.
PACKED_RECURRENT_MIN_BYTES = 4 << 20

# Packed rows whose input gates are made at a time (or one step's rows, if more): the input GEMM
# reads its whole weight once per chunk, which 512 rows amortise (8 MB of gates on "small", 32 MB
# on "original"; 256 rows made "original" 4 % slower, 1024 rows gained nothing on either).
_CHUNK_ROWS = 512
# The same with the input weight packed for oneDNN, which has no weight to re-pack per call and
# runs (rows, proj) @ (proj, 4*cell) fastest at a few hundred rows (docs/benchmarks.md, issue #17).
_PACKED_CHUNK_ROWS = 256


def _step_offsets(active: list[int]) -> list[int]:
    """The first packed time-major row of each step, and the total at the end: ``active``'s prefix sums."""
    return list(accumulate(active, initial=0))


def _gate_chunks(active: list[int], steps, max_rows: int) -> dict[int, tuple[int, int]]:
    """Consecutive steps (in the order ``steps`` runs them) grouped into chunks of at most
    ``max_rows`` packed rows (>= any one step's): ``{first step of a chunk: (first row, end row)}``
    in the packed time-major rows."""
    first = _step_offsets(active)
    chunks: dict[int, tuple[int, int]] = {}
    head, lo, hi = None, 0, 0
    for t in steps:
        if head is not None and max(hi, first[t + 1]) - min(lo, first[t]) <= max_rows:
            lo, hi = min(lo, first[t]), max(hi, first[t + 1])
        else:
            if head is not None:
                chunks[head] = (lo, hi)
            head, lo, hi = t, first[t], first[t + 1]
    if head is not None:
        chunks[head] = (lo, hi)
    return chunks


class InPlaceWeights(NamedTuple):
    """The in-place step's weights: ``input (4*cell, input_dim)`` and ``bias`` with the candidate
    block doubled, ``recurrent (proj, 4*cell)`` (doubled likewise, transposed for ``h @ W``) and
    ``projection (cell, proj)``. On the CPU in fp32, when the recurrent weight is large, it and the
    input weight are held only as ``recurrent_packed`` and ``input_packed``, packed for oneDNN
    (``onednn.py``), and ``recurrent`` and ``input`` are ``None``."""

    input: torch.Tensor | None
    bias: torch.Tensor
    recurrent: torch.Tensor | None
    projection: torch.Tensor
    recurrent_packed: torch.Tensor | None = None
    input_packed: torch.Tensor | None = None


def _cast(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return tensor if dtype is None else tensor.to(dtype)
