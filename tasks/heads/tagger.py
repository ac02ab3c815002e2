"""BiLSTM-CRF sequence tagger over the task's own ScalarMix of the frozen ELMo layers."""

from __future__ import annotations

import torch
from torch import nn

from elmo_core.scalar_mix import ScalarMix

from ..base import Head
from ..encoders import TokenEncoder
from .crf import ConstrainedCrf


class CrfTagger(Head):
    """``[mix(ELMo layers); word emb; char CNN] -> dropout -> BiLSTM -> dropout -> linear -> CRF``.

    Args:
        labels, scheme: tag set and its scheme (the CRF only decodes valid sequences).
        mix: the task's ScalarMix, or ``None`` for the no-ELMo baseline.
        elmo_dim: width of one ELMo layer.
        tokens: learned word/char inputs (may produce nothing).
    Batch inputs: ``layers (num_layers, batch, time, elmo_dim)`` (or ``None``), ``mask (batch, time)``,
    ``word_ids (batch, time)``, ``char_ids (batch, time, max_word_len)``.
    """

    def __init__(
        self,
        labels: list[str],
        scheme: str | None,
        mix: ScalarMix | None,
        elmo_dim: int,
        tokens: TokenEncoder,
        hidden: int = 200,
        lstm_layers: int = 1,
        dropout: float = 0.5,
        elmo_dropout: float = 0.5,
    ):
        super().__init__()
        self.mix, self.tokens = mix, tokens
        input_dim = tokens.output_dim + (mix.output_dim(elmo_dim) if mix is not None else 0)
        if input_dim == 0:
            raise ValueError("the tagger has no input: enable ELMo, word embeddings or the char CNN")
        self.elmo_dropout = nn.Dropout(elmo_dropout)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            input_dim,
            hidden,
            num_layers=lstm_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if lstm_layers > 1 else 0.0,
        )
        self.emissions = nn.Linear(2 * hidden, len(labels))
        self.crf = ConstrainedCrf(labels, scheme)

    def encode(self, layers, mask, word_ids, char_ids) -> torch.Tensor:
        """Emission scores ``(batch, time, num_tags)``."""
        parts = []
        if self.mix is not None:
            parts.append(self.elmo_dropout(self.mix(layers, mask)))
        token_part = self.tokens(word_ids, char_ids)
        if token_part is not None:
            parts.append(token_part)
        x = self.dropout(torch.cat(parts, dim=-1))
        lengths = mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.emissions(self.dropout(out))

    def forward(self, layers, mask, word_ids, char_ids, tags) -> dict[str, torch.Tensor]:
        """``{"loss"}``: mean negative log-likelihood per sentence, plus the mix's L2 penalty."""
        emissions = self.encode(layers, mask, word_ids, char_ids)
        nll = -self.crf(emissions, tags, mask=mask, reduction="mean")
        return {"loss": nll + self.mix_penalty(), "emissions": emissions}

    def loss(self, layers, mask, word_ids, char_ids, tags) -> torch.Tensor:
        return self(layers, mask, word_ids, char_ids, tags)["loss"]

    def decode(self, layers, mask, word_ids, char_ids) -> list[list[int]]:
        return self.crf.decode(self.encode(layers, mask, word_ids, char_ids), mask=mask)
