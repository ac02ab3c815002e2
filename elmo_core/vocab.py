"""Word vocabulary for biLM pretraining, built as bilm-tf builds it.

``<S>``, ``</S>``, ``<UNK>`` come first, then words by descending count (ties by the word, so the
file is deterministic), keeping words with at least ``min_count`` occurrences and at most
``max_size`` entries in all. The file has one word per line.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable

from .errors import ElmoFileError

SPECIAL_TOKENS = ("<S>", "</S>", "<UNK>")


class Vocabulary:
    def __init__(self, words: list[str]):
        if tuple(words[:3]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary must start with {', '.join(SPECIAL_TOKENS)}")
        self.words = words
        self.index = {word: i for i, word in enumerate(words)}
        self.bos, self.eos, self.unk = 0, 1, 2

    def __len__(self) -> int:
        return len(self.words)

    def id(self, word: str) -> int:
        return self.index.get(word, self.unk)

    def save(self, path: str | Path) -> None:
        Path(path).write_text("\n".join(self.words) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        path = Path(path)
        if not path.is_file():
            raise ElmoFileError(f"{path}: vocabulary file not found")
        words = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        missing = [t for t in SPECIAL_TOKENS if t not in words[:3]]
        if missing or tuple(words[:3]) != SPECIAL_TOKENS:
            raise ElmoFileError(f"{path}: the vocabulary must start with the lines {', '.join(SPECIAL_TOKENS)} "
                                f"(missing or out of place: {', '.join(missing) or 'order'})")
        return cls(words)

    @classmethod
    def build(cls, sentences: Iterable[list[str]], min_count: int = 3, max_size: int | None = None) -> "Vocabulary":
        counts = Counter(word for sentence in sentences for word in sentence)
        for special in SPECIAL_TOKENS:
            counts.pop(special, None)
        ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        if max_size is not None:
            ranked = ranked[: max_size - len(SPECIAL_TOKENS)]
        return cls(list(SPECIAL_TOKENS) + ranked)
