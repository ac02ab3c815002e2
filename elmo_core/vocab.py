"""Word vocabulary for biLM pretraining, built as bilm-tf builds it.

``<S>``, ``</S>``, ``<UNK>`` come first, then words by descending count (ties by the word, so the
file is deterministic), keeping words with at least ``min_count`` occurrences and at most
``max_size`` entries in all. The file has one word per line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from data.errors import DataFormatError
from data.text import read_lines

from .errors import BackboneUsageError, ElmoFileError
from .io import atomic_write_text

SPECIAL_TOKENS = ("<S>", "</S>", "<UNK>")


class Vocabulary:
    def __init__(self, words: list[str]):
        if tuple(words[:3]) != SPECIAL_TOKENS:
            raise BackboneUsageError(f"a vocabulary must start with {', '.join(SPECIAL_TOKENS)}")
        self.words = words
        self.index = {word: i for i, word in enumerate(words)}
        self.bos, self.eos, self.unk = 0, 1, 2

    def __len__(self) -> int:
        return len(self.words)

    def id(self, word: str) -> int:
        return self.index.get(word, self.unk)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, "\n".join(self.words) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        path = Path(path)
        if not path.is_file():
            raise ElmoFileError(f"{path}: vocabulary file not found")
        try:
            words = [line for _, line in read_lines(path) if line.strip()]
        except DataFormatError as err:
            raise ElmoFileError(str(err)) from None
        missing = [t for t in SPECIAL_TOKENS if t not in words[:3]]
        if missing or tuple(words[:3]) != SPECIAL_TOKENS:
            raise ElmoFileError(
                f"{path}: the vocabulary must start with the lines {', '.join(SPECIAL_TOKENS)} "
                f"(missing or out of place: {', '.join(missing) or 'order'})"
            )
        return cls(words)

    @classmethod
    def build(cls, sentences: Iterable[list[str]], min_count: int = 3, max_size: int | None = None) -> Vocabulary:
        counts = Counter(word for sentence in sentences for word in sentence)
        for special in SPECIAL_TOKENS:
            counts.pop(special, None)
        ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        if max_size is not None:
            ranked = ranked[: max_size - len(SPECIAL_TOKENS)]
        return cls(list(SPECIAL_TOKENS) + ranked)
