"""ELMo layers for a dataset, computed once by the frozen backbone and reused every epoch.

Data flow: readers -> backbone (here, cached) -> the task's ScalarMix -> head -> metrics.
"""
from __future__ import annotations

import numpy as np
import torch

from elmo_core.bilm import ElmoBiLm
from elmo_core.embed import embed_sentences, length_sorted_batches


class CachedFeatures:
    """All layers of every sentence, kept as float16 (halves memory; the mix runs in float32).

    ``batch(indices) -> (layers (num_layers, batch, time, dim) float32, mask (batch, time) bool)``.
    """

    def __init__(self, arrays: list[np.ndarray]):
        self.arrays = arrays
        self.num_layers, _, self.dim = arrays[0].shape

    @classmethod
    def compute(cls, bilm: ElmoBiLm, sentences: list[list[str]], dtype=np.float16, progress: bool = True,
                desc: str = "embedding") -> "CachedFeatures":
        arrays: list[np.ndarray | None] = [None] * len(sentences)
        for index, layers in embed_sentences(bilm, sentences, length_sorted_batches(sentences), progress=progress):
            arrays[index] = layers.astype(dtype)
        return cls(arrays)  # type: ignore[arg-type]

    @classmethod
    def from_store(cls, store, sentences: list[list[str]]) -> "CachedFeatures":
        return cls([np.asarray(store.get(tokens)) for tokens in sentences])

    def batch(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        longest = max(self.arrays[i].shape[1] for i in indices)
        layers = np.zeros((self.num_layers, len(indices), longest, self.dim), dtype=np.float32)
        mask = np.zeros((len(indices), longest), dtype=bool)
        for row, i in enumerate(indices):
            n = self.arrays[i].shape[1]
            layers[:, row, :n] = self.arrays[i]
            mask[row, :n] = True
        return torch.from_numpy(layers), torch.from_numpy(mask)


class LiveFeatures:
    """Runs the backbone on each batch (prediction on new text; no cache needed)."""

    def __init__(self, bilm: ElmoBiLm, sentences: list[list[str]]):
        from elmo_core.char_ids import batch_to_ids

        self.bilm, self.sentences, self._to_ids = bilm, sentences, batch_to_ids
        self.num_layers, self.dim = bilm.num_layers, bilm.output_dim

    def batch(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            out = self.bilm(self._to_ids([self.sentences[i] for i in indices]))
        return out.layers, out.mask
