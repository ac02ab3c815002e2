"""Streaming reader for a pretraining corpus: one tokenised sentence per line, plain, .xz or .gz.

Never loads the file whole: sentences are read line by line; the trainer shuffles them within a
bounded buffer and groups them into batches of similar length under a token budget.
"""
from __future__ import annotations

import gzip
import lzma
import random
from pathlib import Path
from typing import Iterator, TextIO

from .errors import ElmoFileError


def open_text(path: str | Path) -> TextIO:
    path = Path(path)
    if not path.is_file():
        raise ElmoFileError(f"{path}: corpus file not found")
    if path.suffix == ".xz":
        return lzma.open(path, "rt", encoding="utf-8")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def iter_sentences(path: str | Path, max_tokens: int, skip: int = 0,
                   stats: dict | None = None) -> Iterator[tuple[int, list[str]]]:
    """``(line index, tokens)`` of sentences with at most ``max_tokens`` tokens, from line ``skip``
    on; over-long and empty lines are counted in ``stats`` (never dropped silently)."""
    stats = stats if stats is not None else {}
    stats.setdefault("lines", 0)
    stats.setdefault("too_long", 0)
    stats.setdefault("empty", 0)
    with open_text(path) as handle:
        for number, line in enumerate(handle):
            if number < skip:
                continue
            stats["lines"] += 1
            tokens = line.split()
            if not tokens:
                stats["empty"] += 1
            elif len(tokens) > max_tokens:
                stats["too_long"] += 1
            else:
                yield number, tokens


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
