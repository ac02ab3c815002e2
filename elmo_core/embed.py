"""Embed a file of sentences with a biLM into bilm-tf's ``dump_bilm_embeddings`` HDF5 format.

Output: one dataset per input line index (``"0"``, ``"1"``, ...) of shape
``(num_layers, n_tokens, dim)`` float32, plus ``sentence_to_index`` (a JSON string mapping each
sentence's text to its index), as AllenNLP's former ``elmo --all`` wrote it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from data.errors import DataFormatError
from data.text import read_lines
from data.warnings import CONTROL_CHARACTERS, control_character_finding, describe_control, report

from .bilm import ElmoBiLm
from .char_ids import batch_to_ids
from .errors import ElmoFileError
from .io import atomic_path, check_free_space
from .progress import bar_disabled

HDF5_BYTES_PER_DATASET = 2048  # an upper bound of HDF5's bookkeeping for one small dataset


class SentenceFileError(ElmoFileError):
    """A sentence file is empty, has an empty line, or is not UTF-8 (file:line)."""


def read_sentence_file(path: str | Path) -> list[list[str]]:
    """One whitespace-tokenised sentence per line; every line must hold at least one token."""
    path = Path(path)
    if path.is_dir():
        raise SentenceFileError(f"{path}: is a directory (expected a file with one tokenised sentence per line)")
    if not path.is_file():
        raise SentenceFileError(f"{path}: input file not found")
    sentences = []
    controls = control_character_finding(path)  # ESC, DEL ... inside a token: a counted warning
    try:
        for number, text in read_lines(path):
            tokens = text.split()
            if not tokens:
                raise SentenceFileError(f"{path}:{number}: empty sentence (expected one tokenised sentence per line)")
            if "\x00" in text:
                raise SentenceFileError(
                    f"{path}:{number}: NUL character at column {text.index(chr(0)) + 1}: a binary file, or UTF-16 "
                    "text? (the file must be UTF-8)"
                )
            control = CONTROL_CHARACTERS.search(text)
            if control is not None:
                controls.add(number, describe_control(text, control))
            sentences.append(tokens)
    except DataFormatError as err:  # not UTF-8 (file:line), unreadable
        raise SentenceFileError(str(err)) from None
    report(controls)
    if not sentences:
        raise SentenceFileError(f"{path}: the file is empty (expected one tokenised sentence per line)")
    return sentences


INPUT_FORMATS = ("auto", "text", "tokenized", "conll")


def read_sentences(path: str | Path, input_format: str = "tokenized") -> list[list[str]]:
    """The token lists of a file to embed. ``tokenized``: one tokenised sentence per line (bilm-tf's
    format, :func:`read_sentence_file`; sentence ``i`` is line ``i + 1``); ``text``: raw text split
    into sentences and tokens by :func:`data.tokenize.split_text`; ``conll``: the first column of a
    CoNLL file; ``auto``: ``conll`` when the file has CoNLL's structure
    (:func:`data.conll.looks_like_conll`), ``tokenized`` otherwise."""
    from data.conll import looks_like_conll, read_conll_tokens

    if input_format not in INPUT_FORMATS:
        raise SentenceFileError(f"unknown input format {input_format!r} (expected one of {', '.join(INPUT_FORMATS)})")
    if input_format == "auto":
        input_format = "conll" if Path(path).is_file() and looks_like_conll(path) else "tokenized"
    if input_format == "conll":
        return read_conll_tokens(path)
    if input_format == "text":
        from data.tokenize import read_sentences as read_text_sentences

        return [sentence.words for sentence in read_text_sentences(path, "text")]
    return read_sentence_file(path)


def plan_embedding_batches(sentences: list[list[str]], max_tokens: int = 4000, max_batch: int = 256) -> list[list[int]]:
    """The backbone's batch plan: sentence indices grouped into batches of similar length (longest
    first), at most ``max_batch`` sentences and ``max_tokens`` padded tokens each, so little work
    goes to padding. Deterministic (the feature store's bitwise reproducibility relies on it)."""
    order = sorted(range(len(sentences)), key=lambda i: (-len(sentences[i]), i))
    batches, current, longest = [], [], 0
    for index in order:
        longest_if_added = max(longest, len(sentences[index]))
        if current and (longest_if_added * (len(current) + 1) > max_tokens or len(current) >= max_batch):
            batches.append(current)
            current, longest_if_added = [], len(sentences[index])
        current.append(index)
        longest = longest_if_added
    if current:
        batches.append(current)
    return batches


def in_order_batches(n: int, batch_size: int) -> list[list[int]]:
    return [list(range(start, min(start + batch_size, n))) for start in range(0, n, batch_size)]


# What one ElmoBiLm.forward_many call may hold: enough batches that the LSTM stacks balance across
# the two threads' queue, few enough that memory stays small beside the model and that a feature
# store build commits (and shows progress) often.
WINDOW_BYTES = 256 * 2**20  # of float32 outputs
WINDOW_BATCHES = 8


def window_tokens_for(bilm: ElmoBiLm, window_bytes: int = WINDOW_BYTES) -> int:
    """The padded tokens whose outputs (all layers, float32) fill ``window_bytes``."""
    return max(1, window_bytes // (4 * bilm.num_layers * bilm.output_dim))


def plan_windows(
    batches: list[list[int]], sentences: Sequence[Sequence[str]], max_tokens: int, max_batches: int = WINDOW_BATCHES
) -> list[list[list[int]]]:
    """Consecutive ``batches`` (of indices into ``sentences``) grouped for one
    :meth:`ElmoBiLm.forward_many` call each: at most ``max_batches`` batches and ``max_tokens``
    padded tokens per group (a larger batch alone), the groups of about equal size and the last
    batch not alone where the bounds allow (a lone batch's two directions balance poorly). Which
    group a batch falls in changes no vector, except where a large LSTM packs the window's
    sentences into shared rows (``row_packing.py``): there the rows' makeup moves the vectors by
    float rounding (the same windows give the same bits; the feature store builds unpacked)."""
    sizes = [len(batch) * max((len(sentences[i]) for i in batch), default=0) for batch in batches]
    groups = max(-(-sum(sizes) // max(1, max_tokens)), -(-len(batches) // max(1, max_batches)), 1)
    target_tokens, target_batches = sum(sizes) / groups, len(batches) / groups
    windows: list[list[list[int]]] = []
    tokens = 0
    for position, (batch, padded) in enumerate(zip(batches, sizes)):
        last = position == len(batches) - 1  # the soft targets never leave the last batch alone
        reached = windows and not last and (tokens >= target_tokens or len(windows[-1]) >= target_batches)
        if not windows or reached or tokens + padded > max_tokens or len(windows[-1]) >= max_batches:
            windows.append([])
            tokens = 0
        windows[-1].append(batch)
        tokens += padded
    return windows


def embed_batches(
    bilm: ElmoBiLm, batches: list[list[list[str]]], device: str | torch.device = "cpu"
) -> list[np.ndarray]:
    """All layers of each batch of sentences: ``(num_layers, batch, time, dim)`` float32 arrays,
    zero past each sentence's end; one :meth:`ElmoBiLm.forward_many` call."""
    char_ids = [batch_to_ids(batch, bilm.options.char_cnn.max_chars).to(device) for batch in batches]
    with torch.no_grad():
        return [output.layers.float().cpu().numpy() for output in bilm.forward_many(char_ids)]


def embed_batch(bilm: ElmoBiLm, batch: list[list[str]], device: str | torch.device = "cpu") -> np.ndarray:
    """:func:`embed_batches` of one batch."""
    return embed_batches(bilm, [batch], device)[0]


def embed_windows(
    bilm: ElmoBiLm,
    sentences: Sequence[Sequence[str]],
    batches: list[list[int]],
    device: str | torch.device = "cpu",
    window_tokens: int | None = None,
) -> Iterator[tuple[list[int], np.ndarray]]:
    """Yields ``(batch, (num_layers, batch, time, dim) float32 array)`` for each of ``batches`` (of
    indices into ``sentences``), in order, embedded a window at a time (:func:`plan_windows`;
    ``window_tokens`` default :func:`window_tokens_for`)."""
    if window_tokens is None:
        window_tokens = window_tokens_for(bilm)
    for window in plan_windows(batches, sentences, window_tokens):
        yield from zip(window, embed_batches(bilm, [[sentences[i] for i in batch] for batch in window], device))


def embed_sentences(
    bilm: ElmoBiLm,
    sentences: list[list[str]],
    batches: list[list[int]],
    device: str | torch.device = "cpu",
    progress: bool = True,
    window_tokens: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yields ``(sentence index, (num_layers, n_tokens, dim) float32 array)`` batch by batch, in
    the order of ``batches``; ``window_tokens``: see :func:`embed_windows`."""
    with tqdm(
        total=sum(len(s) for s in sentences), unit="tok", disable=bar_disabled(progress), desc="embedding"
    ) as bar:
        for batch, layers in embed_windows(bilm, sentences, batches, device, window_tokens):
            for row, index in enumerate(batch):
                yield index, layers[:, row, : len(sentences[index])]
            bar.update(sum(len(sentences[i]) for i in batch))


def embed_file(
    bilm: ElmoBiLm,
    input_path: str | Path,
    output_path: str | Path,
    batch_size: int = 256,
    stateful: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    input_format: str = "tokenized",
) -> int:
    """Write the HDF5 file; returns the number of sentences. ``input_format``: see
    :func:`read_sentences`. Stateful mode keeps the file's order (rows of consecutive sentences form
    a batch) because carried state depends on it."""
    sentences = read_sentences(input_path, input_format)
    if stateful:
        bilm.stateful = True
        bilm.reset_states()
        batches = in_order_batches(len(sentences), batch_size)
    else:
        batches = plan_embedding_batches(sentences, max_batch=batch_size)
    # h5py crashes the process if the disk fills up under it: start only if the file fits, and
    # look again as it grows (another process may be filling the disk too).
    per_token = 4 * bilm.num_layers * bilm.output_dim
    needed = sum(per_token * len(s) + HDF5_BYTES_PER_DATASET + 8 * len(s) for s in sentences)
    check_free_space(output_path, needed)
    with atomic_path(output_path) as partial, h5py.File(partial, "w") as out:
        for count, (index, array) in enumerate(embed_sentences(bilm, sentences, batches, device, progress), 1):
            needed -= per_token * array.shape[1] + HDF5_BYTES_PER_DATASET
            if count % 1000 == 0:
                check_free_space(output_path, max(needed, 0))
            out.create_dataset(str(index), data=array, dtype="float32")
        sentence_to_index = {" ".join(tokens): str(i) for i, tokens in enumerate(sentences)}
        dataset = out.create_dataset("sentence_to_index", (1,), dtype=h5py.special_dtype(vlen=str))
        dataset[0] = json.dumps(sentence_to_index)
    return len(sentences)
