"""NamedMixElmo: one frozen biLM feeding any number of named ScalarMixes (one per task), with dropout.

(Until the AllenNLP-compatible :class:`elmo_core.Elmo` took the name, this class was ``Elmo``.)
"""

from __future__ import annotations

import torch
from torch import nn

from .bilm import BiLmOutput, ElmoBiLm
from .errors import BackboneUsageError
from .scalar_mix import ScalarMix


class NamedMixElmo(nn.Module):
    """Frozen backbone + named mixes computed from a single backbone pass.

    Args:
        bilm: the backbone; its parameters are frozen (``requires_grad=False``) and it always runs
            in eval mode without building an autograd graph.
        mixes: task name -> :class:`ScalarMix`, or a list of names (learned mixes with defaults).
        dropout: applied to each mixed representation.
    """

    def __init__(self, bilm: ElmoBiLm, mixes: dict[str, ScalarMix] | list[str], dropout: float = 0.5):
        super().__init__()
        self.bilm = bilm
        for param in self.bilm.parameters():
            param.requires_grad_(False)
        names = list(mixes)
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if not names or duplicates:
            raise BackboneUsageError(
                f"mix names repeat: {', '.join(map(repr, duplicates))} (one mix per name)"
                if duplicates
                else "no mixes given: name at least one (a task name), or the model returns nothing"
            )
        for name in names:
            if not isinstance(name, str) or not name or "." in name:
                raise BackboneUsageError(f"mix name {name!r}: a non-empty str without '.' (a task name) expected")
        if isinstance(mixes, (list, tuple)):
            mixes = {name: ScalarMix(bilm.num_layers) for name in mixes}
        for name, mix in mixes.items():
            if mix.num_layers != bilm.num_layers:
                raise BackboneUsageError(
                    f"mix {name!r} mixes {mix.num_layers} layers; this backbone has {bilm.num_layers}"
                )
        self.mixes = nn.ModuleDict(mixes)
        self.dropout = nn.Dropout(dropout)

    def train(self, mode: bool = True):
        super().train(mode)
        self.bilm.eval()  # the backbone is frozen: never in training mode
        return self

    def backbone(self, char_ids: torch.Tensor) -> BiLmOutput:
        with torch.no_grad():
            return self.bilm(char_ids)

    def forward(self, char_ids: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``char_ids (batch, time, chars)`` -> ({task: (batch, time, dim)}, mask (batch, time))."""
        layers, mask = self.backbone(char_ids)
        return {name: self.dropout(mix(layers, mask)) for name, mix in self.mixes.items()}, mask
