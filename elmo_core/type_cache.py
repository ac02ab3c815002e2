"""A bounded LRU cache of layer-0 (char-CNN) vectors, keyed by a word's character ids.

A token's layer-0 vector depends only on its characters, so with frozen weights each distinct
word needs the char-CNN once. Words not in the cache are simply computed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import torch


class TypeCache:
    """LRU map ``char-id row -> token vector``; ``max_size`` words at most (0 disables it)."""

    def __init__(self, max_size: int = 100_000):
        self.max_size = max_size
        self._store: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __getstate__(self) -> dict:  # copy.deepcopy / pickle of a model: a lock is not copyable
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        with self._lock:
            self._store.clear()
            self.hits = self.misses = 0

    def lookup(self, words: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Vectors for ``words (n, max_chars)`` (distinct rows), computing only the unseen ones.

        Safe to call from several threads (a server embedding requests side by side): the cache is
        read and updated under a lock, ``compute`` runs outside it, and the result is assembled from
        this call's own references, so another thread evicting a word meanwhile changes nothing."""
        keys = [row.tobytes() for row in words.cpu().numpy()]
        with self._lock:
            found = {key: self._store[key] for key in keys if key in self._store}
            self.misses += len(keys) - len(found)
            self.hits += len(found)
        missing = [i for i, key in enumerate(keys) if key not in found]
        if missing:
            computed = compute(words[missing])
            found.update((keys[i], vector) for i, vector in zip(missing, computed))
        with self._lock:
            for key in keys:
                self._store[key] = found[key]
                self._store.move_to_end(key)
            while len(self._store) > self.max_size:
                self._store.popitem(last=False)
        return torch.stack([found[key] for key in keys])
