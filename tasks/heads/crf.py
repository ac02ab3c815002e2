"""pytorch-crf's CRF with transition constraints, so decoding yields only valid BIO/BIOES tags.

Disallowed transitions (and start/end tags) get a large negative constant added to their learned
score, in both training and decoding; pytorch-crf's own forward algorithm does the rest. Viterbi
decoding is pytorch-crf's recursion with the back-trace done for the whole batch at once in NumPy
(pytorch-crf walks it one tag at a time in Python, which dominated prediction time): same
arithmetic, same tie-breaking (the first maximal tag), so the same paths.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torchcrf import CRF

from data.tags import allowed_end_labels, allowed_start_labels, allowed_transitions

FORBIDDEN = -10_000.0


class ConstrainedCrf(CRF):
    """``CRF(num_tags, batch_first=True)`` whose scores respect a tag scheme.

    Args:
        labels: tag strings in id order.
        scheme: ``IOB1``, ``IOB2``, ``BIOES`` or ``IO``; ``None`` means no constraint.
    """

    def __init__(self, labels: list[str], scheme: str | None):
        nn.Module.__init__(self)  # CRF.__init__ would register parameters under the names we expose
        self.num_tags, self.batch_first = len(labels), True
        n = len(labels)
        self.free_start = nn.Parameter(torch.empty(n).uniform_(-0.1, 0.1))
        self.free_end = nn.Parameter(torch.empty(n).uniform_(-0.1, 0.1))
        self.free_transitions = nn.Parameter(torch.empty(n, n).uniform_(-0.1, 0.1))
        transition_mask = torch.full((n, n), FORBIDDEN)
        start_mask, end_mask = torch.full((n,), FORBIDDEN), torch.full((n,), FORBIDDEN)
        if scheme is None:
            transition_mask.zero_(), start_mask.zero_(), end_mask.zero_()
        else:
            for i, j in allowed_transitions(labels, scheme):
                transition_mask[i, j] = 0.0
            start_mask[list(allowed_start_labels(labels, scheme))] = 0.0
            end_mask[list(allowed_end_labels(labels, scheme))] = 0.0
        self.register_buffer("transition_mask", transition_mask)
        self.register_buffer("start_mask", start_mask)
        self.register_buffer("end_mask", end_mask)

    @property
    def transitions(self) -> torch.Tensor:  # read by CRF's algorithms
        return self.free_transitions + self.transition_mask

    @property
    def start_transitions(self) -> torch.Tensor:
        return self.free_start + self.start_mask

    @property
    def end_transitions(self) -> torch.Tensor:
        return self.free_end + self.end_mask

    def _viterbi_decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """``emissions (time, batch, tags)``, ``mask (time, batch)`` with every row's first step
        real -> each row's best tag sequence (as long as its mask)."""
        mask = mask.bool()
        transitions, end = self.transitions, self.end_transitions  # each property sums a mask once
        score = self.start_transitions + emissions[0]  # (batch, tags)
        history = []  # history[t - 1][b, j]: the best previous tag when row b is at tag j at step t
        for t in range(1, emissions.shape[0]):
            # (batch, previous tag, next tag) -> best over the previous tag
            next_score, indices = (score.unsqueeze(2) + transitions + emissions[t].unsqueeze(1)).max(dim=1)
            score = torch.where(mask[t].unsqueeze(1), next_score, score)
            history.append(indices)
        score = score + end
        return backtrace(score.argmax(dim=1).numpy(), history, (mask.long().sum(dim=0) - 1).numpy())


def backtrace(last_tags: np.ndarray, history: list[torch.Tensor], ends: np.ndarray) -> list[list[int]]:
    """Follow every row's back-pointers from its last tag (``last_tags (batch,)``, at step
    ``ends[b]``) to step 0, all rows at once; ``history[t - 1] (batch, tags)`` points from step t."""
    batch = len(last_tags)
    if not history:
        return [[int(tag)] for tag in last_tags]
    pointers = torch.stack(history).numpy()  # (time - 1, batch, tags)
    paths = np.zeros((pointers.shape[0] + 1, batch), dtype=np.int64)  # (time, batch)
    rows = np.arange(batch)
    paths[ends, rows] = last_tags
    for t in range(int(ends.max()), 0, -1):
        running = ends >= t  # rows whose path already reaches step t
        paths[t - 1, running] = pointers[t - 1, rows[running], paths[t, running]]
    return [paths[: ends[b] + 1, b].tolist() for b in range(batch)]
