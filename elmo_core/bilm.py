"""The ELMo biLM: char-CNN token encoder + independent forward/backward projected LSTM stacks."""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
from torch import nn

from .char_cnn import CharCnnEncoder
from .char_ids import boundary_char_ids
from .directions import run_side_by_side
from .errors import BackboneUsageError
from .lstm import ProjectedLstmLayer
from .options import ElmoOptions
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


class TokenTypes(NamedTuple):
    """A batch's layer-0 vectors stored once per distinct word: ``vectors (n_types + 1, proj)``
    (row 0 is the zero vector of padding) and ``index (batch, time)`` into it."""

    vectors: torch.Tensor
    index: torch.Tensor

    def embeddings(self) -> torch.Tensor:
        """``(batch, time, proj)``."""
        return self.vectors[self.index]


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
            words, inverse = torch.unique(flat[is_word], dim=0, return_inverse=True)
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
        skip_last = not boundary_outputs and not self.stateful
        states = self._initial_states(tokens.shape[0], tokens)
        n_layers = len(self.forward_layers)
        outputs, finals = [], []
        fwd_in = bwd_in = tokens
        # Skipping the last step: forward reads positions 0..len-2, backward positions len-1..1.
        steps = lengths - 1 if skip_last else lengths
        for k in range(n_layers):
            forward_layer, backward_layer = self.forward_layers[k], self.backward_layers[k]
            fwd_types = bwd_types = None
            if k == 0 and types is not None:
                fwd_types = (types.vectors, types.index)
                bwd_types = (types.vectors, types.index[:, 1:] if skip_last else types.index)
            (fwd_out, fwd_final), (bwd_out, bwd_final) = run_side_by_side(
                functools.partial(forward_layer, fwd_in, steps, states[k], fwd_types),
                functools.partial(
                    backward_layer, bwd_in[:, 1:] if skip_last else bwd_in, steps, states[n_layers + k], bwd_types
                ),
                tokens.device.type if self.directions_side_by_side else "serial",
            )
            if skip_last:  # back to the full frame: position 0 (<S>) was not computed
                bwd_out = nn.functional.pad(bwd_out, (0, 0, 1, 0))
            if self.options.lstm.use_skip_connections and k > 0:
                fwd_out, bwd_out = fwd_out + fwd_in, bwd_out + bwd_in
            outputs.append(torch.cat([fwd_out, bwd_out], dim=-1))
            finals.append((k, fwd_final, bwd_final))
            fwd_in, bwd_in = fwd_out, bwd_out
        ordered = [f for _, f, _ in finals] + [b for _, _, b in finals]
        self._remember_states(ordered)
        return outputs

    def forward(self, char_ids: torch.Tensor) -> BiLmOutput:
        """``char_ids (batch, time, chars)`` -> :class:`BiLmOutput` with ``time`` positions
        (the ``<S>``/``</S>`` positions the biLM adds internally are removed)."""
        if self.autocast_dtype is not None:
            with torch.autocast(device_type=char_ids.device.type, dtype=self.autocast_dtype):
                layers, mask = self._forward(char_ids)
            return BiLmOutput(layers.float(), mask)
        return self._forward(char_ids)

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

    def _forward(self, char_ids: torch.Tensor) -> BiLmOutput:
        self.check_char_ids(char_ids)
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
        tokens = types.embeddings()
        lstm_layers = self.run_lstms(tokens, lengths + 2, boundary_outputs=not self.skip_boundary_steps, types=types)
        layers = [torch.cat([tokens, tokens], dim=-1)] + lstm_layers
        time = char_ids.shape[1]
        stacked = torch.stack([layer[:, 1 : time + 1] for layer in layers])
        # Positions past a sentence's end held its </S> (or padding): zero them.
        stacked = stacked * mask[None, :, :, None].to(stacked.dtype)
        return BiLmOutput(stacked, mask)
