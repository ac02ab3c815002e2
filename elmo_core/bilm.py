"""The ELMo biLM: char-CNN token encoder + independent forward/backward projected LSTM stacks."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .char_cnn import CharCnnEncoder
from .char_ids import boundary_char_ids
from .directions import run_queued
from .errors import BackboneUsageError
from .lstm import ProjectedLstmLayer
from .options import ElmoOptions
from .row_packing import pack_rows
from .type_cache import TypeCache

State = tuple[torch.Tensor, torch.Tensor]


class BiLmOutput(NamedTuple):
    """``layers``: ``(num_layers, batch, time, 2 * projection_dim)``; layer 0 is the token layer
    duplicated ``[tok, tok]``. ``mask``: ``(batch, time)`` bool, True on real tokens."""

    layers: torch.Tensor
    mask: torch.Tensor


def add_sentence_boundaries(char_ids: torch.Tensor, lengths: torch.Tensor, max_chars: int) -> torch.Tensor:
    """``(batch, time, chars)`` -> ``(batch, time + 2, chars)`` with ``<S>`` first and ``</S>``
    right after each sentence's last token."""
    batch, time, _ = char_ids.shape
    bos, eos = (torch.tensor(ids, dtype=char_ids.dtype, device=char_ids.device) for ids in boundary_char_ids(max_chars))
    out = char_ids.new_zeros(batch, time + 2, char_ids.shape[2])
    out[:, 1 : time + 1] = char_ids
    out[:, 0] = bos
    out[torch.arange(batch, device=char_ids.device), lengths + 1] = eos
    return out


def distinct_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(rows, dim=0, return_inverse=True)`` for ``rows (n, width)`` of ids: the
    distinct rows in ascending (lexicographic) order and each row's index among them. On the CPU
    with ids in ``0 .. 65535`` (character ids are), each row is sorted as one string of big-endian
    16-bit ids, whose byte order is the rows' order: numpy's sort, several times faster than
    ``torch.unique(dim=0)``, which compares rows one tensor op at a time."""
    if rows.device.type != "cpu" or rows.numel() == 0 or rows.dim() != 2:
        return torch.unique(rows, dim=0, return_inverse=True)
    low, high = torch.aminmax(rows)
    if int(low) < 0 or int(high) > 0xFFFF:
        return torch.unique(rows, dim=0, return_inverse=True)
    width = rows.shape[1]
    keys = np.ascontiguousarray(rows.numpy().astype(">u2")).view(np.dtype((np.void, 2 * width))).ravel()
    distinct, inverse = np.unique(keys, return_inverse=True)
    words = torch.from_numpy(distinct.view(">u2").reshape(-1, width).astype(np.int64)).to(rows.dtype)
    return words, torch.from_numpy(inverse.reshape(-1).astype(np.int64))


class TokenTypes(NamedTuple):
    """A batch's layer-0 vectors stored once per distinct word: ``vectors (n_types + 1, proj)``
    (row 0 is the zero vector of padding) and ``index (batch, time)`` into it."""

    vectors: torch.Tensor
    index: torch.Tensor

    def embeddings(self) -> torch.Tensor:
        """``(batch, time, proj)``."""
        return self.vectors[self.index]


class LstmBatch(NamedTuple):
    """A batch for :meth:`ElmoBiLm.run_lstm_batches`: ``tokens (batch, time, proj)``, ``lengths
    (batch,)`` (boundaries included), and optionally the :class:`TokenTypes` ``tokens`` came from."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    types: TokenTypes | None = None


class _TokenLayer(NamedTuple):
    """A batch between the char-CNN and the LSTMs: ``mask (batch, time)`` of the caller's
    positions, and the LSTMs' input (with ``<S>``/``</S>``)."""

    mask: torch.Tensor
    lstm: LstmBatch


class ElmoBiLm(nn.Module):
    """Frozen-or-trainable biLM producing all L+1 layers.

    Default mode is *stateless*: every sentence starts from a zero LSTM state, so a sentence's
    vectors do not depend on its batch or padding. ``stateful=True`` carries each batch row's
    final state into the same row of the next batch, as bilm-tf and AllenNLP do.

    Input ``char_ids (batch, time, max_chars)`` from :func:`batch_to_ids`, without ``<S>``/``</S>``.
    """

    def __init__(self, options: ElmoOptions, stateful: bool = False, type_cache_size: int = 100_000):
        super().__init__()
        self.options = options
        lo = options.lstm
        self.char_cnn = CharCnnEncoder(options.char_cnn, lo.projection_dim)
        self.forward_layers = nn.ModuleList(
            ProjectedLstmLayer(lo.projection_dim, lo.dim, lo.projection_dim, lo.cell_clip, lo.proj_clip, True)
            for _ in range(lo.n_layers)
        )
        self.backward_layers = nn.ModuleList(
            ProjectedLstmLayer(lo.projection_dim, lo.dim, lo.projection_dim, lo.cell_clip, lo.proj_clip, False)
            for _ in range(lo.n_layers)
        )
        self.stateful = stateful
        # CPU inference runs each layer's two directions concurrently (see directions.py).
        self.directions_side_by_side = True
        # Stateless forward() skips the steps whose outputs it drops (see run_lstms).
        self.skip_boundary_steps = True
        # Stateless CPU inference packs a call's sentences end to end into the LSTM's rows
        # (row_packing.py): None = where the recurrent weight is large (lstm.py's
        # PACKED_RECURRENT_MIN_BYTES), True / False = always / never (benchmarks flip it)
        self.pack_sentences: bool | None = None
        self._states: list[State] | None = None  # per (direction, layer), only when stateful
        self.type_cache = TypeCache(type_cache_size)
        self.autocast_dtype: torch.dtype | None = None  # bf16/fp16 inference (see load_bilm)
        self.precision = "fp32"  # the numerics load_bilm set up: fp32, int8, bf16 or fp16

    @property
    def num_layers(self) -> int:
        return self.options.num_layers

    @property
    def output_dim(self) -> int:
        return self.options.output_dim

    def reset_states(self) -> None:
        """Forget the carried LSTM state (stateful mode)."""
        self._states = None

    def train(self, mode: bool = True):
        """Switch mode; the type cache is emptied only when weights that can train are about to:
        a frozen backbone inside a task model toggles modes every epoch and keeps its cache."""
        if mode and any(p.requires_grad for p in self.parameters()):
            self.type_cache.clear()
        return super().train(mode)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # noqa: D102
        self.type_cache.clear()  # vectors cached under the old weights
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def token_embeddings(self, char_ids: torch.Tensor) -> torch.Tensor:
        """Layer-0 vectors ``(batch, time, projection_dim)`` of ``char_ids (batch, time, chars)``;
        all-zero (padding) rows give zero vectors. Each distinct word is encoded once."""
        return self.token_types(char_ids).embeddings()

    def token_types(self, char_ids: torch.Tensor) -> TokenTypes:
        """The distinct words of ``char_ids (batch, time, chars)`` encoded once each (through the
        type cache when not training): see :class:`TokenTypes`."""
        batch, time, chars = char_ids.shape
        flat = char_ids.reshape(-1, chars)
        is_word = flat[:, 0] > 0
        index = flat.new_zeros(flat.shape[0])
        vectors = flat.new_zeros(1, self.options.lstm.projection_dim, dtype=torch.float32)  # row 0: padding
        if bool(is_word.any()):
            words, inverse = distinct_rows(flat[is_word])
            use_cache = self.type_cache.max_size > 0 and not self.training and not torch.is_grad_enabled()
            encoded = self.type_cache.lookup(words, self.char_cnn) if use_cache else self.char_cnn(words)
            vectors = torch.cat([vectors, encoded.to(vectors.dtype)])
            index[is_word] = inverse + 1
        return TokenTypes(vectors, index.view(batch, time))

    def _initial_states(self, batch: int, like: torch.Tensor) -> list[State | None]:
        n = len(self.forward_layers) + len(self.backward_layers)
        if not self.stateful or self._states is None:
            return [None] * n
        states = []
        for h, c in self._states:
            if h.shape[0] < batch:  # a larger batch than before: new rows start from zero
                h = torch.cat([h, h.new_zeros(batch - h.shape[0], h.shape[1])])
                c = torch.cat([c, c.new_zeros(batch - c.shape[0], c.shape[1])])
            states.append((h[:batch].to(like.device), c[:batch].to(like.device)))
        return states

    def _remember_states(self, finals: list[State]) -> None:
        if not self.stateful:
            return
        if self._states is not None:  # rows beyond this batch keep what they had
            merged = []
            for (h, c), (old_h, old_c) in zip(finals, self._states):
                if old_h.shape[0] > h.shape[0]:
                    h = torch.cat([h, old_h[h.shape[0] :].to(h.device)])
                    c = torch.cat([c, old_c[c.shape[0] :].to(c.device)])
                merged.append((h, c))
            finals = merged
        self._states = [(h.detach(), c.detach()) for h, c in finals]

    def run_lstms(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        boundary_outputs: bool = True,
        types: TokenTypes | None = None,
    ) -> list[torch.Tensor]:
        """Forward and backward stacks over ``tokens (batch, time, proj)``; returns one
        ``(batch, time, 2 * proj)`` tensor per LSTM layer (skip connections included).

        ``boundary_outputs=False`` (stateless only) is for callers that drop the ``<S>``/``</S>``
        positions: each direction then stops one step early (forward before ``</S>``, backward
        before ``<S>``). Nothing kept depends on those steps; what they would output is left
        undefined (zeros or the skip connection's input). ``types``, when ``tokens`` is
        ``types.embeddings()``, lets the first layer compute its input GEMM once per distinct word."""
        return self.run_lstm_batches([LstmBatch(tokens, lengths, types)], boundary_outputs)[0]

    def run_lstm_batches(self, batches: Sequence[LstmBatch], boundary_outputs: bool = True) -> list[list[torch.Tensor]]:
        """:meth:`run_lstms` for several batches at once: one stack per direction and batch, run
        side by side from one queue (``directions.run_queued``), so no thread waits at a join
        until the last batch. Stateful mode runs the batches one after the other, in order (each
        starts from the state the previous one left)."""
        if self.stateful and len(batches) > 1:
            return [self.run_lstm_batches([batch], boundary_outputs)[0] for batch in batches]
        skip_last = not boundary_outputs and not self.stateful
        device_type = batches[0].tokens.device.type if batches and self.directions_side_by_side else "serial"
        if self._packs_sentences(batches):
            tasks = [functools.partial(self._packed_stack, backward, batches, skip_last) for backward in (False, True)]
            forward, backward = run_queued(tasks, device_type)
            return [[torch.cat([f, b], dim=-1) for f, b in zip(*pair)] for pair in zip(forward, backward)]
        n_layers = len(self.forward_layers)
        tasks = []
        for batch in batches:
            states = self._initial_states(batch.tokens.shape[0], batch.tokens)
            # Skipping the last step: forward reads positions 0..len-2, backward positions len-1..1.
            steps = batch.lengths - 1 if skip_last else batch.lengths
            for backward, layer_states in ((False, states[:n_layers]), (True, states[n_layers:])):
                tasks.append(
                    functools.partial(
                        self._direction_stack, backward, batch.tokens, steps, layer_states, batch.types, skip_last
                    )
                )
        stacks = run_queued(tasks, device_type)
        outputs = []
        for (fwd_outs, fwd_finals), (bwd_outs, bwd_finals) in zip(stacks[0::2], stacks[1::2]):
            outputs.append([torch.cat([f, b], dim=-1) for f, b in zip(fwd_outs, bwd_outs)])
            self._remember_states(fwd_finals + bwd_finals)
        return outputs

    def _packs_sentences(self, batches: Sequence[LstmBatch]) -> bool:
        """Whether :meth:`run_lstm_batches` packs the sentences into rows (``pack_sentences``):
        stateless inference on the CPU, with every layer on the in-place step."""
        applies = (
            batches
            and not self.stateful
            and not torch.is_grad_enabled()
            and all(b.tokens.device.type == "cpu" and b.tokens.shape[0] > 0 for b in batches)
            and all(layer._plain_linears() for layer in (*self.forward_layers, *self.backward_layers))
        )
        if not applies:
            return False
        wanted = getattr(self, "pack_sentences", None)  # absent on a model pickled before it
        return self.forward_layers[0].recurrent_weight_is_large() if wanted is None else wanted

    def _packed_stack(self, backward: bool, batches: Sequence[LstmBatch], skip_last: bool) -> list[list[torch.Tensor]]:
        """One direction's layers over every sentence of ``batches`` packed end to end into rows
        (``row_packing.py``): per batch, each layer's ``(batch, time, proj)`` output (skip
        connections included) in the batch's own frame, as :meth:`_direction_stack` gives it."""
        layers = self.backward_layers if backward else self.forward_layers
        # Skipping the last step: forward reads positions 0..len-2, backward positions len-1..1.
        offset = 1 if backward and skip_last else 0
        starts, lengths, sizes, base = [], [], [], 0
        for batch in batches:
            rows, time = batch.tokens.shape[:2]
            steps = (batch.lengths - 1 if skip_last else batch.lengths).tolist()
            starts += [base + row * time + offset for row in range(rows)]
            lengths += steps
            sizes.append(rows * time)
            base += rows * time
        packing = pack_rows(starts, lengths, device=batches[0].tokens.device)
        layer_in = packing.pack(torch.cat([b.tokens.reshape(-1, b.tokens.shape[-1]) for b in batches]))
        by_type = None
        if all(b.types is not None for b in batches):
            shifts = torch.cumsum(torch.tensor([0] + [b.types.vectors.shape[0] for b in batches[:-1]]), 0).tolist()
            index = torch.cat([b.types.index.reshape(-1) + shift for b, shift in zip(batches, shifts)])
            by_type = (torch.cat([b.types.vectors for b in batches]), packing.pack(index))
        outputs = []
        for k, layer in enumerate(layers):
            out, _ = layer(layer_in, packing.lengths, None, by_type if k == 0 else None, packing.boundaries)
            if self.options.lstm.use_skip_connections and k > 0:
                out = out + layer_in
            outputs.append(out)
            layer_in = out
        per_batch = [packing.unpack(out, base).split(sizes) for out in outputs]  # per layer, per batch
        return [[layer[i].view(*batch.tokens.shape[:2], -1) for layer in per_batch] for i, batch in enumerate(batches)]

    def _direction_stack(
        self,
        backward: bool,
        tokens: torch.Tensor,
        steps: torch.Tensor,
        states: list[State | None],
        types: TokenTypes | None,
        skip_last: bool,
    ) -> tuple[list[torch.Tensor], list[State]]:
        """One direction's layers over ``tokens (batch, time, proj)``: each layer's
        ``(batch, time, proj)`` output (skip connections included) and final state."""
        layers = self.backward_layers if backward else self.forward_layers
        trim = backward and skip_last  # the backward direction does not compute position 0 (<S>)
        outputs, finals = [], []
        layer_in = tokens
        for k, layer in enumerate(layers):
            by_type = None
            if k == 0 and types is not None:
                by_type = (types.vectors, types.index[:, 1:] if trim else types.index)
            out, final = layer(layer_in[:, 1:] if trim else layer_in, steps, states[k], by_type)
            if trim:  # back to the full frame
                out = nn.functional.pad(out, (0, 0, 1, 0))
            if self.options.lstm.use_skip_connections and k > 0:
                out = out + layer_in
            outputs.append(out)
            finals.append(final)
            layer_in = out
        return outputs, finals

    def forward(self, char_ids: torch.Tensor) -> BiLmOutput:
        """``char_ids (batch, time, chars)`` -> :class:`BiLmOutput` with ``time`` positions
        (the ``<S>``/``</S>`` positions the biLM adds internally are removed)."""
        return self.forward_many([char_ids])[0]

    def forward_many(self, char_ids: Sequence[torch.Tensor]) -> list[BiLmOutput]:
        """:meth:`forward` of each batch, the same vectors; faster than one call per batch on a CPU
        with >= 2 threads, where the LSTM stacks of all the batches share one queue
        (:meth:`run_lstm_batches`). Holds every batch's outputs at once: pass a few batches."""
        for ids in char_ids:
            self.check_char_ids(ids)
        if self.autocast_dtype is not None and char_ids:
            with torch.autocast(device_type=char_ids[0].device.type, dtype=self.autocast_dtype):
                outputs = self._forward_many(char_ids)
            return [BiLmOutput(out.layers.float(), out.mask) for out in outputs]
        return self._forward_many(char_ids)

    def check_char_ids(self, char_ids: torch.Tensor) -> None:
        """Raise :class:`BackboneUsageError` naming what is wrong unless ``char_ids`` is what
        :func:`batch_to_ids` makes for this model: integer ``(batch, time, max_chars)`` with
        ids in ``0 .. 261``."""
        options = self.options.char_cnn
        if not isinstance(char_ids, torch.Tensor):
            raise BackboneUsageError(f"char_ids must be a tensor from batch_to_ids, got a {type(char_ids).__name__}")
        if char_ids.dim() != 3:
            raise BackboneUsageError(
                f"char_ids must be (batch, time, max_chars) from batch_to_ids, got shape {tuple(char_ids.shape)}"
            )
        if char_ids.dtype.is_floating_point or char_ids.dtype.is_complex or char_ids.dtype == torch.bool:
            raise BackboneUsageError(f"char_ids must hold integer character ids (torch.long), got {char_ids.dtype}")
        if char_ids.shape[2] != options.max_chars:
            raise BackboneUsageError(
                f"char_ids has {char_ids.shape[2]} characters per token; this model's max_characters_per_token "
                f"is {options.max_chars} (batch_to_ids(sentences, max_chars={options.max_chars}))"
            )
        ids = self.char_cnn.char_embedding.num_embeddings  # 262: padding 0, then 261 character rows
        low, high = torch.aminmax(char_ids) if char_ids.numel() else (0, 0)
        if int(low) < 0 or int(high) >= ids:
            bad = (char_ids < 0) | (char_ids >= ids)
            row, position, _ = (int(i) for i in bad.nonzero()[0])
            raise BackboneUsageError(
                f"char_ids holds {int(char_ids[row, position][bad[row, position]][0])} at sentence {row}, token "
                f"{position}: character ids lie in 0..{ids - 1}; make them with batch_to_ids"
            )

    def _token_layer(self, char_ids: torch.Tensor) -> _TokenLayer | BiLmOutput:
        """A batch (checked by :meth:`check_char_ids`) up to the LSTMs; an empty batch's (empty)
        output at once."""
        char_ids = char_ids.long()  # int32 / uint8 ids index as well; the boundary ids are long
        if char_ids.shape[0] == 0:  # an empty batch (batch_to_ids([])): empty layers
            empty = char_ids.new_zeros(self.num_layers, 0, char_ids.shape[1], self.output_dim, dtype=torch.float32)
            return BiLmOutput(empty, char_ids.new_zeros(0, char_ids.shape[1], dtype=torch.bool))
        mask = char_ids[:, :, 0] > 0
        lengths = mask.sum(dim=1)
        if bool((lengths == 0).any()):
            raise BackboneUsageError("a sentence in the batch has no tokens: ELMo needs at least one")
        with_bounds = add_sentence_boundaries(char_ids, lengths, self.options.char_cnn.max_chars)
        types = self.token_types(with_bounds)
        return _TokenLayer(mask, LstmBatch(types.embeddings(), lengths + 2, types))

    def _forward_many(self, char_ids: Sequence[torch.Tensor]) -> list[BiLmOutput]:
        prepared = [self._token_layer(ids) for ids in char_ids]
        batches = [p for p in prepared if isinstance(p, _TokenLayer)]
        lstm_layers = iter(self.run_lstm_batches([p.lstm for p in batches], not self.skip_boundary_steps))
        return [p if isinstance(p, BiLmOutput) else self._all_layers(p, next(lstm_layers)) for p in prepared]

    @staticmethod
    def _all_layers(batch: _TokenLayer, lstm_layers: list[torch.Tensor]) -> BiLmOutput:
        tokens, mask = batch.lstm.tokens, batch.mask
        layers = [torch.cat([tokens, tokens], dim=-1)] + lstm_layers
        time = mask.shape[1]
        stacked = torch.stack([layer[:, 1 : time + 1] for layer in layers])
        # Positions past a sentence's end held its </S> (or padding): zero them.
        stacked = stacked * mask[None, :, :, None].to(stacked.dtype)
        return BiLmOutput(stacked, mask)
