"""Pooled sentence classifier over the task's own ScalarMix of the frozen ELMo layers.

    [mix(ELMo layers); word emb; char CNN] -> dropout -> (BiLSTM) -> masked pooling -> MLP -> logits

Padding never counts: the BiLSTM runs on packed sequences, and every pooling ignores masked
positions, so a sentence scores the same alone or padded inside a batch of longer ones
(``tests/test_classifier_head.py``). The one exception is ``mix.layer_norm: true``, whose
statistics are taken over the whole batch (the original ELMo behaviour).

Encoder choice: ``encoder="lstm"`` (default) puts a BiLSTM between the inputs and the pooling.
The no-ELMo baseline needs it (pooled word embeddings are a bag of words); with ELMo it is a
light stand-in for the paper's BCN. ``encoder="none"`` pools the (already contextual) ELMo
vectors directly: much cheaper, a few points worse.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from elmo_core.scalar_mix import ScalarMix

from ..base import Head
from ..encoders import TokenEncoder

POOLINGS = ("mean", "max", "attention")
ENCODERS = ("lstm", "none")


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``states (batch, time, dim)``, ``mask (batch, time)`` -> ``(batch, dim)`` mean over real tokens."""
    weights = mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def masked_max(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(batch, time, dim)`` -> ``(batch, dim)`` element-wise max over real tokens only."""
    filled = states.masked_fill(~mask.unsqueeze(-1), torch.finfo(states.dtype).min)
    return filled.max(dim=1).values


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax that gives masked entries exactly 0 (rows with no entry at all give zeros, not NaN)."""
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=dim) * mask.to(scores.dtype)


class AttentionPooling(nn.Module):
    """Self-attentive pooling: ``a_t = softmax_t(v . tanh(W h_t))`` over real tokens, output ``sum_t a_t h_t``."""

    def __init__(self, dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or dim
        self.project = nn.Linear(dim, hidden)
        self.score = nn.Linear(hidden, 1, bias=False)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(batch, time, dim)``, ``(batch, time)`` -> ``(batch, dim)``."""
        scores = self.score(torch.tanh(self.project(states))).squeeze(-1)
        weights = masked_softmax(scores, mask)
        return torch.bmm(weights.unsqueeze(1), states).squeeze(1)


def build_mlp(input_dim: int, hidden: Sequence[int], num_classes: int, dropout: float) -> nn.Sequential:
    """``Linear -> ReLU -> Dropout`` per hidden size, then the output layer."""
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(input_dim, size), nn.ReLU(), nn.Dropout(dropout)]
        input_dim = size
    layers.append(nn.Linear(input_dim, num_classes))
    return nn.Sequential(*layers)


class PooledClassifier(Head):
    """Sentence classifier: token inputs -> optional BiLSTM -> masked pooling -> MLP.

    Args:
        num_classes: size of the output layer.
        mix: the task's ScalarMix, or ``None`` for the no-ELMo baseline.
        elmo_dim: width of one ELMo layer.
        tokens: learned word/char inputs (may produce nothing), or ``None``.
        encoder: ``"lstm"`` or ``"none"`` (see the module docstring).
        hidden: BiLSTM units per direction.
        pooling: one or more of ``mean``, ``max``, ``attention``; their outputs are concatenated.
        mlp: hidden sizes of the MLP before the output layer (``()`` = a linear classifier).
    Batch inputs: ``layers (num_layers, batch, time, elmo_dim)`` (or ``None``), ``mask (batch, time)``
    bool, ``word_ids (batch, time)``, ``char_ids (batch, time, max_word_len)``. Output
    ``(batch, num_classes)`` logits.
    """

    def __init__(
        self,
        num_classes: int,
        mix: ScalarMix | None,
        elmo_dim: int,
        tokens: TokenEncoder | None,
        encoder: str = "lstm",
        hidden: int = 128,
        lstm_layers: int = 1,
        pooling: str | Sequence[str] = ("mean", "max"),
        mlp: Sequence[int] = (128,),
        dropout: float = 0.5,
        elmo_dropout: float = 0.5,
    ):
        super().__init__()
        pooling = [pooling] if isinstance(pooling, str) else list(pooling)
        unknown = [p for p in pooling if p not in POOLINGS]
        if unknown or not pooling:
            raise ValueError(f"pooling must be one or more of {', '.join(POOLINGS)}; got {pooling}")
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}; got {encoder!r}")
        self.mix, self.tokens, self.pooling = mix, tokens, pooling
        input_dim = (tokens.output_dim if tokens is not None else 0) + (
            mix.output_dim(elmo_dim) if mix is not None else 0
        )
        if input_dim == 0:
            raise ValueError("the classifier has no input: enable ELMo, word embeddings or the char CNN")
        self.elmo_dropout = nn.Dropout(elmo_dropout)
        self.dropout = nn.Dropout(dropout)
        self.lstm = None
        state_dim = input_dim
        if encoder == "lstm":
            self.lstm = nn.LSTM(
                input_dim,
                hidden,
                num_layers=lstm_layers,
                batch_first=True,
                bidirectional=True,
                dropout=dropout if lstm_layers > 1 else 0.0,
            )
            state_dim = 2 * hidden
        self.attention = AttentionPooling(state_dim) if "attention" in pooling else None
        self.mlp = build_mlp(state_dim * len(pooling), mlp, num_classes, dropout)

    def token_inputs(self, layers, mask, word_ids, char_ids) -> torch.Tensor:
        """``(batch, time, input_dim)``: mixed ELMo and learned token features, concatenated."""
        parts = []
        if self.mix is not None:
            parts.append(self.elmo_dropout(self.mix(layers, mask)))
        if self.tokens is not None:
            token_part = self.tokens(word_ids, char_ids)
            if token_part is not None:
                parts.append(token_part)
        return torch.cat(parts, dim=-1)

    def encode(self, layers, mask, word_ids, char_ids) -> torch.Tensor:
        """Token states ``(batch, time, state_dim)``; values at padded positions are meaningless."""
        x = self.dropout(self.token_inputs(layers, mask, word_ids, char_ids))
        if self.lstm is None:
            return x
        lengths = mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.dropout(out)

    def pool(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(batch, time, state_dim)`` -> ``(batch, state_dim * len(pooling))``."""
        pooled = []
        for kind in self.pooling:
            if kind == "mean":
                pooled.append(masked_mean(states, mask))
            elif kind == "max":
                pooled.append(masked_max(states, mask))
            else:
                pooled.append(self.attention(states, mask))
        return torch.cat(pooled, dim=-1)

    def logits(self, layers, mask, word_ids, char_ids) -> torch.Tensor:
        """``(batch, num_classes)``."""
        return self.mlp(self.pool(self.encode(layers, mask, word_ids, char_ids), mask))

    def forward(self, layers, mask, word_ids, char_ids, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss"}``: mean cross-entropy over the batch plus the mix's L2 penalty. ``labels (batch,)``."""
        logits = self.logits(layers, mask, word_ids, char_ids)
        return {"loss": nn.functional.cross_entropy(logits, labels) + self.mix_penalty(), "logits": logits}

    def loss(self, layers, mask, word_ids, char_ids, labels: torch.Tensor) -> torch.Tensor:
        return self(layers, mask, word_ids, char_ids, labels)["loss"]

    def predict(self, layers, mask, word_ids, char_ids) -> torch.Tensor:
        """``(batch,)`` class ids."""
        return self.logits(layers, mask, word_ids, char_ids).argmax(dim=-1)
