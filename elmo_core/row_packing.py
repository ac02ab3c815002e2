"""Sentences packed end to end into the rows of one LSTM batch, for inference on large LSTMs.

A length-sorted batch still ends in a tail: as its shorter sentences finish, the step's GEMM runs
on fewer and fewer rows, and a large recurrent weight is multiplied at a fraction of its rate
(oneDNN: ~60 GFLOP/s at 86 rows, ~20 at 8, on "original"). Packing several sentences into each
row keeps the rows busy to the end: the rows are about as long as the longest sentence, and the
LSTM zeroes a row's state where a new sentence begins in it (``ProjectedLstmLayer``'s
``boundaries``), so each sentence is computed from a zero state as it would be alone.

The plan is the longest-processing-time greedy: sentences longest first, each to the row that is
shortest so far, over ``ceil(total / longest)`` rows, which makes every row close to the longest
sentence's length. Deterministic (ties go to the lower row and the earlier sentence).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch


class RowPacking(NamedTuple):
    """Where each position of each sentence goes. ``source`` indexes the sentences' positions
    flattened over the inputs (see :func:`pack_rows`), ``target`` the packed ``(rows, width)``
    frame flattened; ``lengths (rows,)`` is each row's total; ``boundaries (k, 2)`` gives ``(row,
    position)`` for every sentence that starts after position 0 of its row."""

    rows: int
    width: int
    lengths: torch.Tensor
    source: torch.Tensor
    target: torch.Tensor
    boundaries: torch.Tensor

    def pack(self, flat: torch.Tensor) -> torch.Tensor:
        """``flat (n, ...)`` (the inputs flattened as ``source`` indexes them) -> ``(rows, width,
        ...)``, zeros where no sentence lies."""
        packed = flat.new_zeros(self.rows * self.width, *flat.shape[1:])
        packed[self.target] = flat[self.source]
        return packed.view(self.rows, self.width, *flat.shape[1:])

    def unpack(self, packed: torch.Tensor, size: int) -> torch.Tensor:
        """``packed (rows, width, ...)`` -> ``(size, ...)`` in the inputs' flat frame, zeros at
        the positions no sentence covered."""
        trailing = packed.shape[2:]
        flat = packed.new_zeros(size, *trailing)
        flat[self.source] = packed.reshape(self.rows * self.width, *trailing)[self.target]
        return flat


def pack_rows(starts: Sequence[int], lengths: Sequence[int], device: torch.device | None = None) -> RowPacking:
    """The packing of sentences whose positions are ``starts[i] .. starts[i] + lengths[i] - 1`` in
    some flat frame (each ``lengths[i] >= 1``) into rows about as long as the longest."""
    if not lengths or min(lengths) < 1:
        raise ValueError("pack_rows needs at least one sentence, each of length >= 1")
    longest, total = max(lengths), sum(lengths)
    n_rows = math.ceil(total / longest)
    loads = [(0, row) for row in range(n_rows)]  # a heap of (load, row)
    offsets = [0] * len(lengths)
    row_of = [0] * len(lengths)
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        load, row = heapq.heappop(loads)
        row_of[i], offsets[i] = row, load
        heapq.heappush(loads, (load + lengths[i], row))
    row_lengths = [0] * n_rows
    for load, row in loads:
        row_lengths[row] = load
    width = max(row_lengths)
    counts = torch.tensor(lengths, dtype=torch.long)
    within = torch.arange(total) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    source = torch.repeat_interleave(torch.tensor(starts, dtype=torch.long), counts) + within
    row_starts = torch.tensor([r * width + o for r, o in zip(row_of, offsets)], dtype=torch.long)
    target = torch.repeat_interleave(row_starts, counts) + within
    boundaries = torch.tensor([(r, o) for r, o in zip(row_of, offsets) if o > 0], dtype=torch.long).view(-1, 2)
    return RowPacking(
        n_rows,
        width,
        torch.tensor(row_lengths, dtype=torch.long, device=device),
        source.to(device),
        target.to(device),
        boundaries,
    )
