"""Batching shared by the token-level and sentence-level tasks: length-sorted index batches and
padded id tensors."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch


def length_sorted_batches(lengths: Sequence[int], batch_size: int, rng: random.Random | None) -> list[list[int]]:
    """Indices grouped by similar length (little padding); random tie order and batch order when
    ``rng`` is given (training), deterministic order otherwise (prediction)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random() if rng else i))
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(chunks)
    return chunks


def padded_token_ids(
    word_ids: list[list[int]], char_ids: list[list[list[int]]], indices: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``word_ids (batch, time)``, ``char_ids (batch, time, longest word)`` and ``mask (batch, time)``
    for the sentences ``indices``; 0 is padding everywhere."""
    longest = max(len(word_ids[i]) for i in indices)
    longest_word = max((len(w) for i in indices for w in char_ids[i]), default=1)
    # Filled as numpy arrays: a torch.tensor per word would cost more than the batch's training step.
    words = np.zeros((len(indices), longest), dtype=np.int64)
    chars = np.zeros((len(indices), longest, max(longest_word, 1)), dtype=np.int64)
    mask = np.zeros((len(indices), longest), dtype=bool)
    for row, i in enumerate(indices):
        n = len(word_ids[i])
        words[row, :n] = word_ids[i]
        mask[row, :n] = True
        for col, word_chars in enumerate(char_ids[i]):
            chars[row, col, : len(word_chars)] = word_chars
    return torch.from_numpy(words), torch.from_numpy(chars), torch.from_numpy(mask)


def batch_layers(features, indices: list[int], mask: torch.Tensor) -> torch.Tensor | None:
    """The split's ELMo layers ``(num_layers, batch, time, dim)`` for ``indices`` (``None`` without
    ELMo), checked to line up with the token ``mask`` built from the same sentences."""
    if features is None:
        return None
    layers, feature_mask = features.batch(indices)
    if not torch.equal(feature_mask, mask):
        raise RuntimeError("ELMo features are out of step with the tokens")  # a bug, not a user error
    return layers
