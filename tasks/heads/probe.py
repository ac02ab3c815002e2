"""A linear probe: the task's ScalarMix of frozen layers -> one linear layer -> a label per token.

The ELMo paper's probing set-up (POS tagging, chunking): nothing but a linear map sits on top of
the frozen representation, so the score measures what the layers themselves encode.
"""

from __future__ import annotations

import torch
from torch import nn

from elmo_core.scalar_mix import ScalarMix

from ..base import Head


class LinearProbe(Head):
    """``layers (num_layers, batch, time, dim)``, ``mask (batch, time)`` -> logits ``(batch, time, labels)``."""

    def __init__(self, mix: ScalarMix, elmo_dim: int, num_labels: int):
        super().__init__()
        self.mix = mix
        self.linear = nn.Linear(mix.output_dim(elmo_dim), num_labels)

    def logits(self, layers: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.linear(self.mix(layers, mask))

    def forward(self, layers, mask, tags) -> dict[str, torch.Tensor]:
        """``{"loss"}``: token cross-entropy (``tags (batch, time)``, masked) plus the mix's penalty."""
        logits = self.logits(layers, mask)
        return {"loss": nn.functional.cross_entropy(logits[mask], tags[mask]) + self.mix_penalty(), "logits": logits}

    def decode(self, layers, mask) -> list[list[int]]:
        best = self.logits(layers, mask).argmax(-1)
        return [row[: int(n)].tolist() for row, n in zip(best, mask.sum(1))]
