"""A straightforward per-time-step implementation of the biLM's LSTM layer.

The shape of AllenNLP's ``LstmCellWithProjection`` loop: at every step both the input and the
state projections are computed for all rows, padding included, and the update is masked. Used as
an oracle in the tests; not for real work.
"""

from __future__ import annotations

import torch

from .bilm import ElmoBiLm, TokenTypes
from .lstm import ProjectedLstmLayer


def reference_layer_forward(
    layer: ProjectedLstmLayer,
    inputs: torch.Tensor,
    lengths: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor] | None = None,
):
    """Same contract as :meth:`ProjectedLstmLayer.forward`, one full-batch step at a time."""
    batch, total_steps, _ = inputs.shape
    h = inputs.new_zeros(batch, layer.projection_dim) if state is None else state[0]
    c = inputs.new_zeros(batch, layer.cell_dim) if state is None else state[1]
    outputs = inputs.new_zeros(batch, total_steps, layer.projection_dim)
    steps = range(total_steps) if layer.go_forward else range(total_steps - 1, -1, -1)
    for t in steps:
        valid = (lengths > t).unsqueeze(1)
        gates = (
            inputs[:, t] @ layer.input_linear.weight.t() + h @ layer.state_linear.weight.t() + layer.input_linear.bias
        )
        i, j, f, o = gates.chunk(4, dim=1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(j)
        if layer.cell_clip is not None:
            c_new = c_new.clamp(-layer.cell_clip, layer.cell_clip)
        h_new = (torch.sigmoid(o) * torch.tanh(c_new)) @ layer.projection.weight.t()
        if layer.proj_clip is not None:
            h_new = h_new.clamp(-layer.proj_clip, layer.proj_clip)
        h = torch.where(valid, h_new, h)
        c = torch.where(valid, c_new, c)
        outputs[:, t] = torch.where(valid, h_new, torch.zeros_like(h_new))
    return outputs, (h, c)


def reference_token_embeddings(bilm: ElmoBiLm, char_ids: torch.Tensor) -> torch.Tensor:
    """The char-CNN on every position, padding included, then masked (AllenNLP's way)."""
    batch, time, chars = char_ids.shape
    pooled = bilm.char_cnn.pool_full_width(char_ids.reshape(-1, chars))  # every window of all 50 positions
    vectors = bilm.char_cnn.finish(pooled).view(batch, time, -1)
    return vectors * (char_ids[:, :, 0] > 0).unsqueeze(-1).to(vectors.dtype)


def reference_token_types(bilm: ElmoBiLm, char_ids: torch.Tensor) -> TokenTypes:
    """:func:`reference_token_embeddings` as one "type" per position (no deduplication)."""
    batch, time, _ = char_ids.shape
    vectors = reference_token_embeddings(bilm, char_ids).reshape(batch * time, -1)
    index = torch.arange(1, batch * time + 1, device=char_ids.device).view(batch, time)
    return TokenTypes(torch.cat([vectors.new_zeros(1, vectors.shape[1]), vectors]), index)


class ReferenceLayers:
    """Context manager: make a biLM run the per-step reference loop, the char-CNN on every
    position, and no type cache: the straightforward implementation of the same math."""

    def __init__(self, bilm: ElmoBiLm):
        self.bilm = bilm
        self._saved: list = []

    def __enter__(self) -> ElmoBiLm:
        for layer in list(self.bilm.forward_layers) + list(self.bilm.backward_layers):
            self._saved.append((layer, layer.forward))
            layer.forward = lambda x, lengths, state=None, by_type=None, _layer=layer: reference_layer_forward(
                _layer, x, lengths, state
            )
        self.bilm.token_types = lambda ids: reference_token_types(self.bilm, ids)
        self._side_by_side = self.bilm.directions_side_by_side
        self.bilm.directions_side_by_side = False  # AllenNLP's order: one direction after the other
        self._skip = self.bilm.skip_boundary_steps
        self.bilm.skip_boundary_steps = False  # every step of every direction, boundaries included
        return self.bilm

    def __exit__(self, *exc) -> None:
        for layer, forward in self._saved:
            layer.forward = forward
        del self.bilm.token_types  # back to the class's method
        self.bilm.directions_side_by_side = self._side_by_side
        self.bilm.skip_boundary_steps = self._skip
