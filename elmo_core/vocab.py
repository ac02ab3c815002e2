"""Word vocabulary for biLM pretraining, in bilm-tf's format.

A vocabulary file has one token per line: the special tokens ``<S>``, ``</S>``, ``<UNK>`` on the
first three lines (bilm-tf's own files differ in their order, e.g. the 1B Word Benchmark's starts
``</S>``, ``<S>``, ``<UNK>``; their ids are their line positions), then the words by descending
count. :meth:`Vocabulary.build` counts one as bilm-tf's README asks: the specials, then words by
descending count (ties by the word, so the file is deterministic), keeping words with at least
``min_count`` occurrences and at most ``max_size`` entries in all.
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
FORMAT = (
    "a vocabulary must start with the lines <S>, </S>, <UNK> (in any order), then one token per line "
    "by descending frequency (bilm-tf's format)"
)


class Vocabulary:
    def __init__(self, words: list[str]):
        if set(words[:3]) != set(SPECIAL_TOKENS) or len(words[:3]) != 3:
            raise BackboneUsageError(f"a vocabulary must start with {', '.join(SPECIAL_TOKENS)}")
        self.words = words
        self.index = {word: i for i, word in enumerate(words)}
        if len(self.index) != len(words):
            raise BackboneUsageError("a vocabulary lists every token once")
        self.bos, self.eos, self.unk = (self.index[t] for t in SPECIAL_TOKENS)

    def __len__(self) -> int:
        return len(self.words)

    def id(self, word: str) -> int:
        return self.index.get(word, self.unk)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, "\n".join(self.words) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a vocabulary file; every problem is an :class:`ElmoFileError` naming ``FILE:LINE``
        (not UTF-8, a special token missing or out of place, a token listed twice, a line holding
        more than one token). Blank lines are skipped, as bilm-tf skips them."""
        path = Path(path)
        if path.is_dir():
            raise ElmoFileError(f"{path}: is a directory (expected a vocabulary file; {FORMAT})")
        if not path.is_file():
            raise ElmoFileError(f"{path}: vocabulary file not found")
        words: list[str] = []
        first_line: dict[str, int] = {}
        try:
            for number, line in read_lines(path):
                word = line.strip()
                if not word:
                    continue
                if len(word.split()) > 1:
                    raise ElmoFileError(
                        f"{path}:{number}: {word[:60]!r} holds more than one token (one token per line; "
                        "counts are not part of bilm-tf's vocabulary format)"
                    )
                if word in first_line:
                    raise ElmoFileError(
                        f"{path}:{number}: {word!r} is listed again (first on line {first_line[word]}); "
                        "a vocabulary lists every token once"
                    )
                first_line[word] = number
                words.append(word)
        except DataFormatError as err:  # not UTF-8 (file:line)
            raise ElmoFileError(str(err)) from None
        if not words:
            raise ElmoFileError(f"{path}: the vocabulary is empty; {FORMAT}")
        missing = [t for t in SPECIAL_TOKENS if t not in first_line]
        if missing:
            raise ElmoFileError(f"{path}: no {', '.join(missing)} line; {FORMAT}")
        late = [t for t in SPECIAL_TOKENS if t not in words[:3]]
        if late:
            token = late[0]
            raise ElmoFileError(f"{path}:{first_line[token]}: {token} is not on one of the first three lines; {FORMAT}")
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
