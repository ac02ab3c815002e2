"""Streaming reader for a pretraining corpus: one tokenised sentence per line, plain, .xz or .gz.

Never loads the file whole: sentences are read line by line; the trainer shuffles them within a
bounded buffer and groups them into batches of similar length under a token budget.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from data.errors import DataFormatError
from data.text import open_binary, read_lines

from .errors import ElmoFileError


def _check_corpus_file(path: Path) -> None:
    if path.is_dir():
        raise ElmoFileError(f"{path}: is a directory (expected a corpus file, one tokenised sentence per line)")
    if not path.is_file():
        raise ElmoFileError(f"{path}: corpus file not found")


def open_text(path: str | Path) -> TextIO:
    """The corpus as a UTF-8 text handle (``.xz``/``.gz``/``.bz2`` decompressed on the fly)."""
    path = Path(path)
    _check_corpus_file(path)
    return io.TextIOWrapper(open_binary(path), encoding="utf-8")


def iter_sentences(
    path: str | Path, max_tokens: int, skip: int = 0, stats: dict | None = None
) -> Iterator[tuple[int, list[str]]]:
    """``(line index, tokens)`` of sentences with at most ``max_tokens`` tokens, from line ``skip``
    on (0-based indices); over-long and empty lines are counted in ``stats`` (never dropped
    silently). Lines are read by :func:`data.text.read_lines` (strict UTF-8)."""
    path = Path(path)
    _check_corpus_file(path)
    stats = stats if stats is not None else {}
    stats.setdefault("lines", 0)
    stats.setdefault("too_long", 0)
    stats.setdefault("empty", 0)
    try:
        for number, line in read_lines(path):
            index = number - 1
            if index < skip:
                continue
            stats["lines"] += 1
            tokens = line.split()
            if not tokens:
                stats["empty"] += 1
            elif len(tokens) > max_tokens:
                stats["too_long"] += 1
            else:
                yield index, tokens
    except DataFormatError as err:  # not UTF-8 (file:line), a damaged .xz/.gz
        raise ElmoFileError(str(err)) from None


def check_corpus(path: str | Path, max_tokens: int) -> None:
    """Fail early on an empty corpus or one whose sentences are all too long."""
    stats: dict = {}
    for _ in iter_sentences(path, max_tokens, stats=stats):
        return  # one usable sentence is enough
    if stats.get("lines", 0) == 0 or stats["lines"] == stats["empty"]:
        raise ElmoFileError(f"{path}: the corpus is empty (expected one tokenised sentence per line)")
    raise ElmoFileError(f"{path}: all {stats['too_long']} sentences are longer than max_sentence_tokens={max_tokens}")


def batches_of(buffer: list[list[str]], batch_tokens: int, rng: random.Random) -> list[list[list[str]]]:
    """Shuffle a buffer, sort it by length, cut it into batches whose padded size stays under
    ``batch_tokens``, and return the batches in random order (deterministic given ``rng``)."""
    rng.shuffle(buffer)
    buffer.sort(key=len)
    batches, current = [], []
    for sentence in buffer:
        if current and (len(current) + 1) * (len(sentence) + 2) > batch_tokens:
            batches.append(current)
            current = []
        current.append(sentence)
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches
