"""Character CNN token encoder: embedding -> convolutions -> max-pool -> highway -> projection.

Computes ELMo's layer 0 (the context-independent token representation) as bilm-tf does.
"""

from __future__ import annotations

import torch
from torch import nn

from .char_ids import PAD_CHAR
from .options import CharCnnOptions

PAD_ID = PAD_CHAR + 1  # the shifted id of the padding inside a word


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
        if torch.is_grad_enabled() or type(self.carry) is not nn.Linear:
            carry, transform = self.carry(x), self.transform(x)
        else:  # inference: both products in one GEMM (same numbers, one pass over x)
            carry, transform = nn.functional.linear(x, *self._stacked_weights()).chunk(2, dim=-1)
        gate = torch.sigmoid(carry)
        return gate * self.activation(transform) + (1.0 - gate) * x

    def _stacked_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``[W_carry; W_transform]`` and the biases, made once per weight version."""
        tensors = (self.carry.weight, self.carry.bias, self.transform.weight, self.transform.bias)
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        if getattr(self, "_stacked_key", None) != key:
            self._stacked = (
                torch.cat([self.carry.weight, self.transform.weight]).detach(),
                torch.cat([self.carry.bias, self.transform.bias]).detach(),
            )
            self._stacked_key = key
        return self._stacked


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
        # Training keeps the plain convolution over all positions (its gradients are the usual ones).
        pooled = self.pool_full_width(char_ids) if torch.is_grad_enabled() else self.pool_by_length(char_ids)
        return self.finish(pooled)

    def finish(self, pooled: torch.Tensor) -> torch.Tensor:
        """Max-pooled filter responses ``(n_words, n_filters)`` -> token vectors ``(n_words,
        projection_dim)``: activation, highway layers, projection."""
        token = self.activation(pooled)
        for highway in self.highways:
            token = highway(token)
        return self.projection(token)

    def pool_full_width(self, char_ids: torch.Tensor) -> torch.Tensor:
        """Max over every window position of each filter: ``(n_words, n_filters)`` before the
        activation (``act(max(x)) == max(act(x))`` for the monotonic ReLU/tanh)."""
        # (n_words, char_dim, max_chars): Conv1d wants channels first.
        chars = self.char_embedding(char_ids).transpose(1, 2)
        return torch.cat([conv(chars).max(dim=-1).values for conv in self.convolutions], dim=-1)

    def pool_by_length(self, char_ids: torch.Tensor) -> torch.Tensor:
        """Same result as :meth:`pool_full_width` (to float rounding), without convolving padding.

        A word of ``r`` real characters (``<bow>`` and ``<eow>`` included) is followed by padding
        up to ``max_chars``; windows that lie entirely in that padding all have the same value per
        filter, which the first window past the word already gives. So each word is convolved at
        its first ``r`` window positions only (far fewer than ``max_chars`` for most words), grouped with the
        words of the same ``r``. All widths run as one GEMM: every window is read ``widest``
        characters wide and a width-``w`` filter's weights fill only its first ``w`` characters
        (zeros after), which costs a few spare multiply-adds but makes one large, efficient GEMM
        however few words a call has."""
        n_words, max_chars = char_ids.shape
        widest = max(width for width, _ in self.options.filters)
        positions = torch.arange(1, max_chars + 1, device=char_ids.device)
        real = ((char_ids != PAD_ID) * positions).amax(dim=1)  # (n_words,) last non-padding id's index + 1
        weight, bias = self.stacked_filters()  # (widest * char_dim, n_filters), (n_filters,)
        # A window starting at t is valid for width w when it ends inside the row: t <= max_chars - w.
        last_start = max_chars - self.filter_widths(char_ids.device)  # (n_filters,)
        pooled = weight.new_empty(n_words, self.options.n_filters)
        for length in torch.unique(real).tolist():
            rows = (real == length).nonzero().squeeze(1)
            # window starts 0..length: the last one (if inside the row) is the all-padding window
            starts = min(length + 1, max_chars)
            chars = char_ids[rows, :starts]
            chars = torch.cat([chars, chars.new_full((len(rows), widest - 1), PAD_ID)], dim=1)
            embedded = self.char_embedding(chars)  # (words, starts + widest - 1, char_dim)
            # (words * starts, widest * char_dim): each window's characters, position-major
            windows = embedded.unfold(1, widest, 1).transpose(2, 3).reshape(len(rows) * starts, -1)
            scores = (windows @ weight).view(len(rows), starts, -1)  # (words, starts, n_filters)
            if starts - 1 > int(last_start.min()):  # long words: drop windows that overrun the row
                outside = torch.arange(starts, device=char_ids.device)[:, None] > last_start[None, :]
                scores = scores.masked_fill(outside, float("-inf"))
            pooled[rows] = scores.amax(dim=1).to(pooled.dtype)
        return pooled + bias

    def stacked_filters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every convolution as one matrix ``(widest * char_dim, n_filters)`` over a window of
        ``widest`` characters (rows position-major; a narrower filter's trailing rows are zero),
        and the biases ``(n_filters,)``."""
        widest = max(width for width, _ in self.options.filters)
        char_dim = self.options.char_dim
        blocks = []
        for (width, _), conv in zip(self.options.filters, self.convolutions):
            block = conv.weight.permute(2, 1, 0).reshape(width * char_dim, -1)  # (width * char_dim, n)
            blocks.append(nn.functional.pad(block, (0, 0, 0, (widest - width) * char_dim)))
        return torch.cat(blocks, dim=1), torch.cat([conv.bias for conv in self.convolutions])

    def filter_widths(self, device: torch.device) -> torch.Tensor:
        """``(n_filters,)``: the width of each filter."""
        return torch.cat([torch.full((count,), width, device=device) for width, count in self.options.filters])
