"""Character ids exactly as bilm-tf's ``Batcher`` and AllenNLP's ``ELMoCharacterMapper`` make them.

A token becomes ``max_chars`` (50) ids: begin-of-word (258), its UTF-8 bytes (at most 48, longer
words are truncated), end-of-word (259), then padding (260). Sentence markers ``<S>``/``</S>`` are
words whose single "byte" is 256/257. Every id is shifted by +1 so that 0 means "no token".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .errors import BackboneUsageError

MAX_CHARS = 50
BOS_CHAR = 256  # <S>
EOS_CHAR = 257  # </S>
BOW_CHAR = 258  # begin of word
EOW_CHAR = 259  # end of word
PAD_CHAR = 260  # padding inside a word
BOS_TOKEN = "<S>"
EOS_TOKEN = "</S>"


def _marker_ids(char: int, max_chars: int) -> list[int]:
    ids = [PAD_CHAR] * max_chars
    ids[0], ids[1], ids[2] = BOW_CHAR, char, EOW_CHAR
    return ids


def word_to_char_ids(word: str, max_chars: int = MAX_CHARS) -> list[int]:
    """The +1-shifted character ids of one token, length ``max_chars``.

    ``<S>`` and ``</S>`` map to the sentence markers, as in the original vocabulary; any other
    string is encoded as UTF-8 and truncated to ``max_chars - 2`` bytes.
    """
    if word == BOS_TOKEN:
        ids = _marker_ids(BOS_CHAR, max_chars)
    elif word == EOS_TOKEN:
        ids = _marker_ids(EOS_CHAR, max_chars)
    else:
        encoded = word.encode("utf-8", "ignore")[: max_chars - 2]
        ids = [PAD_CHAR] * max_chars
        ids[0] = BOW_CHAR
        ids[1 : 1 + len(encoded)] = list(encoded)
        ids[1 + len(encoded)] = EOW_CHAR
    return [i + 1 for i in ids]


def boundary_char_ids(max_chars: int = MAX_CHARS) -> tuple[list[int], list[int]]:
    """Ids of the sentence-begin and sentence-end tokens (already +1 shifted)."""
    return word_to_char_ids(BOS_TOKEN, max_chars), word_to_char_ids(EOS_TOKEN, max_chars)


def batch_to_ids(batch: Sequence[Sequence[str]], max_chars: int = MAX_CHARS) -> torch.Tensor:
    """Character ids for a batch of tokenised sentences.

    Args:
        batch: ``batch`` sentences, each a list of tokens (no ``<S>``/``</S>``: the biLM adds them).
    Returns:
        LongTensor ``(batch, time, max_chars)``; ``time`` is the longest sentence, shorter
        sentences are padded with all-zero rows.
    Raises:
        BackboneUsageError (a ValueError): a sentence is empty or a token is empty (neither has a
            representation); the batch, a sentence or a token has the wrong type (a sentence given
            as one string would otherwise be read as one token per character).
    """
    if isinstance(batch, str):
        raise BackboneUsageError(
            "batch_to_ids takes a list of sentences, each a list of tokens; got one str (e.g. pass [text.split()])"
        )
    longest = max((len(s) for s in batch), default=0)
    ids = np.zeros((len(batch), longest, max_chars), dtype=np.int64)
    cache: dict[str, list[int]] = {}
    for row, sentence in enumerate(batch):
        if isinstance(sentence, str):
            raise BackboneUsageError(
                f"sentence {row} of the batch is a str ({sentence[:40]!r}), not a list of tokens: split it first "
                "(e.g. text.split(), or data.tokenize.split_text for raw text)"
            )
        if len(sentence) == 0:
            raise BackboneUsageError(f"sentence {row} of the batch is empty: ELMo needs at least one token")
        for col, token in enumerate(sentence):
            if not isinstance(token, str):
                raise BackboneUsageError(
                    f"sentence {row}, token {col} is not a str but {type(token).__name__} ({token!r:.40})"
                )
            if not token:
                raise BackboneUsageError(f"sentence {row}, token {col} is an empty string")
            if token not in cache:
                cache[token] = word_to_char_ids(token, max_chars)
            ids[row, col] = cache[token]
    return torch.from_numpy(ids)
