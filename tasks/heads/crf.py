"""pytorch-crf's CRF with transition constraints, so decoding yields only valid BIO/BIOES tags.

Disallowed transitions (and start/end tags) get a large negative constant added to their learned
score, in both training and decoding; pytorch-crf's own forward algorithm and Viterbi do the rest.
"""

from __future__ import annotations

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
