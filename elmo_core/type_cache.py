"""A bounded LRU cache of layer-0 (char-CNN) vectors, keyed by a word's character ids.

A token's layer-0 vector depends only on its characters, so with frozen weights each distinct
word needs the char-CNN once. Words not in the cache are simply computed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch


class TypeCache:
    """LRU map ``char-id row -> token vector``; ``max_size`` words at most (0 disables it)."""

    def __init__(self, max_size: int = 100_000):
        self.max_size = max_size
        self._store: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        self._store.clear()
        self.hits = self.misses = 0

    def lookup(self, words: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Vectors for ``words (n, max_chars)`` (distinct rows), computing only the unseen ones."""
        keys = [row.tobytes() for row in words.cpu().numpy()]
        missing = [i for i, key in enumerate(keys) if key not in self._store]
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        if missing:
            computed = compute(words[missing])
            for i, vector in zip(missing, computed):
                self._store[keys[i]] = vector
        vectors = []
        for key in keys:
            self._store.move_to_end(key)
            vectors.append(self._store[key])
        while len(self._store) > self.max_size:
            self._store.popitem(last=False)
        return torch.stack(vectors)
