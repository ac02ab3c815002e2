"""Task-side token encoders: learned (or GloVe-initialised) word embeddings and a character CNN.

These are the non-ELMo inputs of a head; the no-ELMo baseline uses only them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data.errors import DataFormatError

from .config import CharsConfig, WordsConfig

PAD, UNK = "<pad>", "<unk>"


class Vocab:
    """String <-> id with ``<pad>`` = 0 and ``<unk>`` = 1."""

    def __init__(self, items: list[str]):
        self.items = [PAD, UNK] + [i for i in items if i not in (PAD, UNK)]
        self.index = {item: i for i, item in enumerate(self.items)}

    def __len__(self) -> int:
        return len(self.items)

    def id(self, item: str) -> int:
        return self.index.get(item, 1)

    @classmethod
    def from_counts(cls, counts: Counter, min_count: int = 1) -> Vocab:
        return cls(sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w)))


def normalise_word(word: str, lowercase: bool) -> str:
    """Digits are folded to 0: numbers carry little lexical identity for tagging."""
    word = word.lower() if lowercase else word
    return "".join("0" if ch.isdigit() else ch for ch in word)


def read_glove(path: str | Path, vocab: Vocab, dim: int) -> tuple[torch.Tensor, int]:
    """Embedding matrix initialised from a GloVe-format text file (word then ``dim`` floats);
    returns it with the number of vocabulary words found."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, None, "GloVe file not found")
    rng = np.random.default_rng(0)
    matrix = rng.normal(0, 0.1, (len(vocab), dim)).astype(np.float32)
    matrix[0] = 0
    found = 0
    with path.open(encoding="utf-8", errors="strict") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.rstrip().split(" ")
            if len(parts) != dim + 1:
                raise DataFormatError(
                    path, number, f"expected a word and {dim} numbers, found {len(parts) - 1} numbers"
                )
            if parts[0] in vocab.index:
                matrix[vocab.index[parts[0]]] = np.asarray(parts[1:], dtype=np.float32)
                found += 1
    return torch.from_numpy(matrix), found


class CharCnn(nn.Module):
    """``(batch, time, max_word_len)`` char ids -> ``(batch, time, n_filters)`` by max-pooling."""

    def __init__(self, n_chars: int, char_dim: int, n_filters: int, width: int):
        super().__init__()
        self.embedding = nn.Embedding(n_chars, char_dim, padding_idx=0)
        self.conv = nn.Conv1d(char_dim, n_filters, width, padding=width // 2)
        self.output_dim = n_filters

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        batch, time, length = chars.shape
        x = self.embedding(chars.view(-1, length)).transpose(1, 2)
        x = self.conv(x).masked_fill((chars.view(-1, length) == 0).unsqueeze(1), -1e4)
        return x.max(dim=-1).values.clamp(min=-1e3).view(batch, time, -1)


class TokenEncoder(nn.Module):
    """Concatenates learned word embeddings and char-CNN features (either may be absent)."""

    def __init__(
        self,
        word_vocab: Vocab | None,
        word_dim: int,
        char_vocab: Vocab | None,
        char_dim: int,
        char_filters: int,
        char_width: int = 3,
        pretrained: torch.Tensor | None = None,
    ):
        super().__init__()
        self.words = None
        self.chars = None
        self.output_dim = 0
        if word_vocab is not None and word_dim > 0:
            self.words = nn.Embedding(len(word_vocab), word_dim, padding_idx=0)
            if pretrained is not None:
                with torch.no_grad():
                    self.words.weight.copy_(pretrained)
            self.output_dim += word_dim
        if char_vocab is not None and char_filters > 0:
            self.chars = CharCnn(len(char_vocab), char_dim, char_filters, char_width)
            self.output_dim += char_filters

    def forward(self, word_ids: torch.Tensor, char_ids: torch.Tensor) -> torch.Tensor | None:
        parts = []
        if self.words is not None:
            parts.append(self.words(word_ids))
        if self.chars is not None:
            parts.append(self.chars(char_ids))
        return torch.cat(parts, dim=-1) if parts else None


def token_vocabularies(words: WordsConfig, sentences: list[list[str]]) -> tuple[Vocab, Vocab]:
    """Word and character vocabularies of the training sentences."""
    word_counts = Counter(normalise_word(w, words.lowercase) for s in sentences for w in s)
    return (
        Vocab.from_counts(word_counts, words.min_count),
        Vocab.from_counts(Counter(ch for s in sentences for w in s for ch in w)),
    )


def token_ids(
    sentences: list[list[str]], words: Vocab, chars: Vocab, lowercase: bool, max_word_chars: int
) -> tuple[list[list[int]], list[list[list[int]]]]:
    """Word ids and (first ``max_word_chars``) character ids of every token."""
    word_ids = [[words.id(normalise_word(w, lowercase)) for w in s] for s in sentences]
    char_ids = [[[chars.id(ch) for ch in w[:max_word_chars]] for w in s] for s in sentences]
    return word_ids, char_ids


def token_encoder_from_config(
    words: WordsConfig, chars: CharsConfig, word_vocab: Vocab, char_vocab: Vocab
) -> TokenEncoder:
    """The ``model.words`` / ``model.chars`` sections of a task config as a :class:`TokenEncoder`."""
    pretrained = read_glove(words.glove, word_vocab, words.dim)[0] if words.glove and words.dim else None
    return TokenEncoder(
        word_vocab if words.dim > 0 else None, words.dim, char_vocab, chars.dim, chars.filters, chars.width, pretrained
    )
