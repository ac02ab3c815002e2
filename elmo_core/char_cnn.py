"""Character CNN token encoder: embedding -> convolutions -> max-pool -> highway -> projection.

Computes ELMo's layer 0 (the context-independent token representation) as bilm-tf does.
"""

from __future__ import annotations

import torch
from torch import nn

from .options import CharCnnOptions


class Highway(nn.Module):
    """bilm-tf's highway layer, kept in TensorFlow's form.

    ``g = sigmoid(x W_carry + b_carry)``; ``y = g * act(x W_transform + b_transform) + (1 - g) * x``.
    The gate multiplies the *transformed* branch (the usual PyTorch highway has it the other way).
    Shapes: ``(..., dim) -> (..., dim)``.
    """

    def __init__(self, dim: int, activation: str):
        super().__init__()
        self.carry = nn.Linear(dim, dim)
        self.transform = nn.Linear(dim, dim)
        self.activation = torch.relu if activation == "relu" else torch.tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.carry(x))
        return gate * self.activation(self.transform(x)) + (1.0 - gate) * x


class CharCnnEncoder(nn.Module):
    """Maps character ids ``(n_words, max_chars)`` to token vectors ``(n_words, projection_dim)``.

    Row 0 of the embedding is the padding id (all zeros), as in bilm-tf's prediction graph; the
    HDF5 file's 261 rows fill rows 1..261.
    """

    def __init__(self, options: CharCnnOptions, projection_dim: int):
        super().__init__()
        self.options = options
        self.char_embedding = nn.Embedding(262, options.char_dim)  # 261 file rows + padding row 0
        self.convolutions = nn.ModuleList(
            nn.Conv1d(options.char_dim, n_filters, kernel_size=width) for width, n_filters in options.filters
        )
        self.highways = nn.ModuleList(Highway(options.n_filters, options.activation) for _ in range(options.n_highway))
        self.projection = nn.Linear(options.n_filters, projection_dim)
        self.activation = torch.relu if options.activation == "relu" else torch.tanh

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        """``(n_words, max_chars)`` long -> ``(n_words, projection_dim)`` float."""
        # (n_words, char_dim, max_chars): Conv1d wants channels first.
        chars = self.char_embedding(char_ids).transpose(1, 2)
        pooled = [self.activation(conv(chars).max(dim=-1).values) for conv in self.convolutions]
        token = torch.cat(pooled, dim=-1)
        for highway in self.highways:
            token = highway(token)
        return self.projection(token)
