"""Word-sense heads over ELMo vectors of the target tokens.

* :class:`SenseCentroids` -- the ELMo paper's WSD method (Peters et al. 2018, sec. 5.3): the mean
  vector of every sense seen in SemCor, and at test time the cosine-nearest centroid among the
  senses seen for the instance's lemma + POS. No training; lemmas never seen answer ``None``
  (the task backs off to WordNet's first sense).
* :class:`CandidateSenseClassifier` -- a trained alternative: the task's learned ScalarMix, a linear
  map into a sense-embedding space and a softmax restricted to the WordNet candidates of the
  instance's lemma + POS (padding slots can never win).

Both read one vector per instance: ``layers (num_layers, batch, dim)`` (a multiword target is the
mean of its words' vectors; see tasks/wsd.py).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch
from torch import nn

from elmo_core.scalar_mix import ScalarMix

from ..base import Head


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (all-zero rows stay zero), float32."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


class SenseCentroids:
    """Sense centroids grouped by lemma + POS; prediction by cosine nearest neighbour.

    Args:
        senses: sense key of each centroid row.
        centroids: ``(num_senses, dim)`` mean training vector of each sense.
        groups: ``{(lemma, pos): [row, ...]}`` -- the senses seen in training for that lemma + POS.
        counts: training instances behind each centroid (reporting, and the SemCor MFS baseline).
    """

    def __init__(self, senses: list[str], centroids: np.ndarray, groups: dict[Hashable, list[int]], counts: np.ndarray):
        self.senses, self.groups, self.counts = senses, groups, counts
        self.unit = unit_rows(centroids)

    @classmethod
    def fit(cls, vectors: np.ndarray, senses: Sequence[str], groups: Sequence[Hashable]) -> SenseCentroids:
        """``vectors (n, dim)``: one training vector per instance, with its gold sense and its group
        (lemma, POS). Returns the per-sense means."""
        if len(vectors) != len(senses) or len(senses) != len(groups):
            raise ValueError(f"{len(vectors)} vectors, {len(senses)} senses and {len(groups)} groups")
        index: dict[str, int] = {}
        row_of = np.array([index.setdefault(sense, len(index)) for sense in senses], dtype=np.int64)
        sums = np.zeros((len(index), vectors.shape[1]), dtype=np.float64)
        np.add.at(sums, row_of, np.asarray(vectors, dtype=np.float64))
        counts = np.bincount(row_of, minlength=len(index))
        by_group: dict[Hashable, list[int]] = {}
        for row, group in zip(row_of.tolist(), groups):
            members = by_group.setdefault(group, [])
            if row not in members:
                members.append(row)
        return cls(list(index), (sums / counts[:, None]).astype(np.float32), by_group, counts)

    def knows(self, group: Hashable) -> bool:
        return group in self.groups

    def nearest(self, vectors: np.ndarray, groups: Sequence[Hashable]) -> list[str | None]:
        """``vectors (n, dim)`` -> the nearest (cosine) centroid's sense among each row's group, or
        ``None`` for a group never seen in training."""
        queries = unit_rows(vectors)
        answers: list[str | None] = []
        for query, group in zip(queries, groups):
            rows = self.groups.get(group)
            if rows is None:
                answers.append(None)
                continue
            similarities = self.unit[rows] @ query
            answers.append(self.senses[rows[int(np.argmax(similarities))]])
        return answers

    def most_frequent(self, groups: Sequence[Hashable]) -> list[str | None]:
        """The sense seen most often in training for each group (the 'SemCor MFS' baseline)."""
        answers: list[str | None] = []
        for group in groups:
            rows = self.groups.get(group)
            answers.append(None if rows is None else self.senses[max(rows, key=lambda r: (self.counts[r], -r))])
        return answers


def mix_instances(mix: ScalarMix, layers: torch.Tensor) -> torch.Tensor:
    """``layers (num_layers, batch, dim)`` -> ``(batch, dim)`` through a ScalarMix (which wants a
    time axis: each instance becomes a one-token 'sentence', so a masked layer norm sees all of them)."""
    mask = torch.ones(layers.shape[1], 1, dtype=torch.bool, device=layers.device)
    return mix(layers.unsqueeze(2), mask).squeeze(1)


class CandidateSenseClassifier(Head):
    """``score(s | x) = e_s . W dropout(mix(x)) + b_s`` over the candidate senses of the instance only.

    Args:
        num_senses: size of the sense vocabulary; id 0 is padding and is never a candidate.
        mix: the task's ScalarMix over the biLM layers.
        elmo_dim: width of one ELMo layer.
        sense_dim: width of the sense embeddings.
    Inputs: ``layers (num_layers, batch, elmo_dim)``, ``candidates (batch, max_candidates)`` sense ids
    (0-padded), ``candidate_mask (batch, max_candidates)`` bool. Output: ``(batch, max_candidates)``
    scores, the lowest float wherever the mask is False.
    """

    def __init__(self, num_senses: int, mix: ScalarMix, elmo_dim: int, sense_dim: int = 64, dropout: float = 0.3):
        super().__init__()
        self.mix = mix
        self.dropout = nn.Dropout(dropout)
        self.project = nn.Linear(mix.output_dim(elmo_dim), sense_dim)
        self.senses = nn.Embedding(num_senses, sense_dim, padding_idx=0)
        self.bias = nn.Embedding(num_senses, 1, padding_idx=0)
        nn.init.normal_(self.senses.weight, std=sense_dim**-0.5)
        nn.init.zeros_(self.bias.weight)
        with torch.no_grad():
            self.senses.weight[0].zero_()

    def scores(self, layers: torch.Tensor, candidates: torch.Tensor, candidate_mask: torch.Tensor) -> torch.Tensor:
        query = self.project(self.dropout(mix_instances(self.mix, layers)))  # (batch, sense_dim)
        scores = torch.einsum("bd,bcd->bc", query, self.senses(candidates)) + self.bias(candidates).squeeze(-1)
        return scores.masked_fill(~candidate_mask, torch.finfo(scores.dtype).min)

    def forward(self, layers, candidates, candidate_mask, gold: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss"}``: cross-entropy of the gold candidate position ``gold (batch,)``, plus the mix's L2 penalty."""
        scores = self.scores(layers, candidates, candidate_mask)
        return {"loss": nn.functional.cross_entropy(scores, gold) + self.mix_penalty(), "scores": scores}

    def loss(self, layers, candidates, candidate_mask, gold: torch.Tensor) -> torch.Tensor:
        return self(layers, candidates, candidate_mask, gold)["loss"]

    def choose(self, layers, candidates, candidate_mask) -> torch.Tensor:
        """``(batch,)`` sense ids: the best-scoring candidate of each row (never a padding slot)."""
        best = self.scores(layers, candidates, candidate_mask).argmax(dim=-1)
        return candidates.gather(1, best.unsqueeze(1)).squeeze(1)
