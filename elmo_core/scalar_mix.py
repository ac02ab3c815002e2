"""ScalarMix: the ELMo paper's task-specific weighting of the biLM layers.

``mix = gamma * sum_j softmax(w)_j * h_j`` with ``w`` initialised to 0 and ``gamma`` to 1.
Fixed modes let benchmarks compare weightings: a single layer ``k``, the equal average, the top
layer only, and the concatenation of all layers.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import BackboneUsageError

MODES = ("learned", "single", "average", "top", "concat")


def masked_layer_norm(tensor: torch.Tensor, mask: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Normalise one layer with a single mean and variance over all unmasked elements of the
    batch (the original's layer norm). ``tensor (batch, time, dim)``, ``mask (batch, time)``."""
    broadcast = mask.unsqueeze(-1).to(tensor.dtype)
    count = broadcast.sum() * tensor.shape[-1]
    masked = tensor * broadcast
    mean = masked.sum() / count
    variance = (((masked - mean) * broadcast) ** 2).sum() / count
    return (tensor - mean) / torch.sqrt(variance + eps)


class ScalarMix(nn.Module):
    """Mixes ``num_layers`` tensors of shape ``(batch, time, dim)`` into one.

    Args:
        num_layers: L + 1.
        mode: ``learned`` (softmax weights + gamma), ``single`` (layer ``layer``), ``average``,
            ``top`` (last layer), ``concat`` (output width ``num_layers * dim``).
        layer: the layer index for ``mode="single"``.
        do_layer_norm: normalise each layer (masked) before mixing (learned mode).
        l2_coef: the paper's lambda; :meth:`penalty` returns ``lambda * ||w||^2``.
        trainable: ``False`` freezes ``w`` and ``gamma`` (gamma stays trainable only if True).
    """

    def __init__(
        self,
        num_layers: int,
        mode: str = "learned",
        layer: int | None = None,
        do_layer_norm: bool = False,
        l2_coef: float = 0.0,
        trainable: bool = True,
        initial_weights: list[float] | None = None,
        initial_gamma: float = 1.0,
    ):
        super().__init__()
        if isinstance(num_layers, float) or not num_layers >= 1:
            raise BackboneUsageError(f"ScalarMix needs num_layers >= 1 (the biLM's L + 1), got {num_layers!r}")
        if mode not in MODES:
            raise BackboneUsageError(f"unknown ScalarMix mode {mode!r}; choose one of {', '.join(MODES)}")
        if mode == "single" and (layer is None or not 0 <= layer < num_layers):
            raise BackboneUsageError(f"mode 'single' needs layer in 0..{num_layers - 1}, got {layer}")
        if initial_weights is not None and len(initial_weights) != num_layers:
            raise BackboneUsageError(f"{len(initial_weights)} initial weights given for {num_layers} layers")
        self.num_layers, self.mode, self.layer = num_layers, mode, layer
        self.do_layer_norm, self.l2_coef = do_layer_norm, l2_coef
        learned = mode == "learned"
        init = torch.tensor(initial_weights or [0.0] * num_layers, dtype=torch.float32)
        self.weights = nn.Parameter(init, requires_grad=learned and trainable)
        self.gamma = nn.Parameter(torch.tensor([initial_gamma]), requires_grad=learned and trainable)

    def output_dim(self, input_dim: int) -> int:
        return input_dim * self.num_layers if self.mode == "concat" else input_dim

    def normalized_weights(self) -> torch.Tensor:
        """The s_j actually applied, ``(num_layers,)``."""
        if self.mode == "learned":
            return torch.softmax(self.weights, dim=0)
        s = torch.zeros(self.num_layers)
        if self.mode == "single":
            s[self.layer] = 1.0
        elif self.mode == "top":
            s[-1] = 1.0
        else:  # average; concat keeps every layer whole
            s[:] = 1.0 / self.num_layers
        return s

    def penalty(self) -> torch.Tensor:
        """``lambda * sum(w_j^2)`` on the raw (pre-softmax) weights; 0 for fixed modes."""
        if self.mode != "learned" or self.l2_coef == 0.0:
            return self.weights.new_zeros(())
        return self.l2_coef * (self.weights**2).sum()

    def forward(self, layers: torch.Tensor | list[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        """``layers``: ``(num_layers, batch, time, dim)`` or a list of ``(batch, time, dim)``.
        Returns ``(batch, time, dim)`` (``num_layers * dim`` for concat)."""
        if isinstance(layers, torch.Tensor):
            layers = list(layers.unbind(0))
        if len(layers) != self.num_layers:
            raise BackboneUsageError(f"ScalarMix built for {self.num_layers} layers received {len(layers)}")
        if self.mode == "concat":
            return torch.cat(layers, dim=-1)
        if self.mode == "single":
            return layers[self.layer]
        if self.mode == "top":
            return layers[-1]
        if self.mode == "average":
            return torch.stack(layers).mean(dim=0)
        if self.do_layer_norm:
            if mask is None:
                raise BackboneUsageError("ScalarMix with layer norm needs the mask")
            layers = [masked_layer_norm(layer, mask) for layer in layers]
        s = torch.softmax(self.weights, dim=0).to(layers[0].dtype)
        mixed = sum(weight * layer for weight, layer in zip(s, layers))
        return self.gamma.to(mixed.dtype) * mixed
