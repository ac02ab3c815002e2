"""Task-side token encoders: word embeddings (learned, or initialised from pretrained vectors such
as GloVe) and a character CNN.

These are the non-ELMo inputs of a head; the no-ELMo baseline uses only them. With pretrained
vectors (``model.words.pretrained``), the word vocabulary is the training words seen at least
``min_count`` times plus every word of any split (train, dev, test) that has a pretrained vector,
as AllenNLP builds its vocabulary from every split: no labels are involved, and a dev or test word
keeps the vector it was pretrained with instead of becoming ``<unk>``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from torch import nn

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


def normalise_word(word: str, lowercase: bool, fold_digits: bool = True) -> str:
    """The vocabulary's form of a token: lower-cased when asked; digits folded to 0 when asked
    (numbers carry little lexical identity for tagging; pretrained vectors do have numbers)."""
    word = word.lower() if lowercase else word
    return "".join("0" if ch.isdigit() else ch for ch in word) if fold_digits else word


def load_pretrained(words: WordsConfig):
    """The vectors ``model.words.pretrained`` names (``None`` when unset); their width must be ``model.words.dim``."""
    if not words.pretrained:
        return None
    from data.vectors import load_vectors

    return load_vectors(words.pretrained, dim=words.dim)


def pretrained_init(vocab: Vocab, vectors, words: WordsConfig) -> tuple[torch.Tensor, int]:
    """``(len(vocab), dim)`` initial embeddings: the pretrained vector of every word that has one,
    a seeded normal draw with the vectors' spread for the others, zeros for padding; and how many
    words were found."""
    index = vectors.index()
    rows = [(i, index[w]) for i, w in enumerate(vocab.items) if i > 1 and w in index]
    matrix = np.random.default_rng(0).normal(0.0, float(np.std(vectors.matrix[:10000])), (len(vocab), vectors.dim))
    matrix = matrix.astype(np.float32)
    if rows:
        mine, theirs = zip(*rows)
        matrix[list(mine)] = vectors.matrix[list(theirs)]
    matrix[0] = 0
    return torch.from_numpy(matrix), len(rows)


def coverage_note(vectors, words: WordsConfig, splits: dict[str, list[list[str]]], vocab: Vocab, found: int) -> str:
    """``glove.6B.50d covers 95.1 % of train tokens (dev 94.8 %, test 94.2 %); 21,532 of 23,641 words``."""
    index = vectors.index()
    shares = {}
    for name, sentences in splits.items():
        tokens = [normalise_word(w, words.lowercase, words.fold_digits) for s in sentences for w in s]
        shares[name] = 100 * sum(t in index for t in tokens) / max(len(tokens), 1)
    first, *rest = shares.items()
    others = f" ({', '.join(f'{k} {v:.1f} %' for k, v in rest)})" if rest else ""
    return (
        f"{vectors.source} covers {first[1]:.1f} % of {first[0]} tokens{others}; {found:,} of {len(vocab) - 2:,} "
        f"vocabulary words start from a pretrained vector ({'trainable' if words.trainable else 'frozen'})"
    )


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
        trainable: bool = True,
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
            self.words.weight.requires_grad_(trainable)
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


def token_vocabularies(
    words: WordsConfig, train: list[list[str]], other_splits: list[list[list[str]]] = (), vectors=None
) -> tuple[Vocab, Vocab]:
    """Word and character vocabularies: training words seen ``min_count`` times, plus (with
    ``vectors``) every word of any split that has a pretrained vector; characters of train."""
    counts = Counter(normalise_word(w, words.lowercase, words.fold_digits) for s in train for w in s)
    vocab = Vocab.from_counts(counts, words.min_count)
    if vectors is not None:
        index = vectors.index()
        known = set(vocab.items)
        extra = {
            normalise_word(w, words.lowercase, words.fold_digits)
            for sentences in (train, *other_splits)
            for s in sentences
            for w in s
        }
        vocab = Vocab(vocab.items[2:] + sorted(w for w in extra if w in index and w not in known))
    return vocab, Vocab.from_counts(Counter(ch for s in train for w in s for ch in w))


def fit_token_inputs(
    words: WordsConfig, train: list[list[str]], splits: dict[str, list[list[str]]]
) -> tuple[Vocab, Vocab, torch.Tensor | None, list[str]]:
    """The word and character vocabularies of a task, the pretrained initial word embeddings
    (``None`` without ``model.words.pretrained``) and notes for the log (vector coverage)."""
    vectors = load_pretrained(words) if words.dim > 0 else None
    others = [tokens for tokens in splits.values() if tokens is not train]
    word_vocab, char_vocab = token_vocabularies(words, train, others, vectors)
    if vectors is None:
        return word_vocab, char_vocab, None, []
    initial, found = pretrained_init(word_vocab, vectors, words)
    return word_vocab, char_vocab, initial, [coverage_note(vectors, words, splits, word_vocab, found)]


def token_ids(
    sentences: list[list[str]], words: Vocab, chars: Vocab, config: WordsConfig, max_word_chars: int
) -> tuple[list[list[int]], list[list[list[int]]]]:
    """Word ids and (first ``max_word_chars``) character ids of every token."""
    word_ids = [[words.id(normalise_word(w, config.lowercase, config.fold_digits)) for w in s] for s in sentences]
    char_ids = [[[chars.id(ch) for ch in w[:max_word_chars]] for w in s] for s in sentences]
    return word_ids, char_ids


def token_encoder_from_config(
    words: WordsConfig,
    chars: CharsConfig,
    word_vocab: Vocab,
    char_vocab: Vocab,
    pretrained: torch.Tensor | None = None,
) -> TokenEncoder:
    """The ``model.words`` / ``model.chars`` sections of a task config as a :class:`TokenEncoder`;
    ``pretrained``: initial word embeddings (:func:`pretrained_init`), absent when a trained run
    is restored (its checkpoint holds them)."""
    return TokenEncoder(
        word_vocab if words.dim > 0 else None,
        words.dim,
        char_vocab,
        chars.dim,
        chars.filters,
        chars.width,
        pretrained,
        trainable=words.trainable,
    )
