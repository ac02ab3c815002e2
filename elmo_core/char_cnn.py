"""Character CNN token encoder: embedding -> convolutions -> max-pool -> highway -> projection.

Computes ELMo's layer 0 (the context-independent token representation) as bilm-tf does.

Both inference and training convolve each word over its own windows only (not the padding after
it, which is most of the 50 positions): inference with :meth:`CharCnnEncoder.pool_by_length`,
training with :class:`WindowMaxPool`, an autograd Function whose gradients are the full-width
convolution's (the windows it skips hold the same all-padding input as one it keeps).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .char_ids import PAD_CHAR
from .options import CharCnnOptions

PAD_ID = PAD_CHAR + 1  # the shifted id of the padding inside a word

#: Switch for tests and benchmarks: ``False`` sends training through :meth:`CharCnnEncoder.pool_full_width`.
windows_in_training = True


class Highway(nn.Module):
    """bilm-tf's highway layer, kept in TensorFlow's form.

    ``g = sigmoid(x W_carry + b_carry)``; ``y = g * act(x W_transform + b_transform) + (1 - g) * x``.
    The gate multiplies the *transformed* branch (the usual PyTorch highway has it the other way).
    Shapes: ``(..., dim) -> (..., dim)``.
    """

    def __init__(self, dim: int, activation: str):
        super().__init__()
        self.carry = nn.Linear(dim, dim)
        self.transform = nn.Linear(dim, dim)
        self.activation = torch.relu if activation == "relu" else torch.tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or type(self.carry) is not nn.Linear:
            carry, transform = self.carry(x), self.transform(x)
        else:  # inference: both products in one GEMM (same numbers, one pass over x)
            carry, transform = nn.functional.linear(x, *self._stacked_weights()).chunk(2, dim=-1)
        gate = torch.sigmoid(carry)
        return gate * self.activation(transform) + (1.0 - gate) * x

    def _stacked_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``[W_carry; W_transform]`` and the biases, made once per weight version."""
        tensors = (self.carry.weight, self.carry.bias, self.transform.weight, self.transform.bias)
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        if getattr(self, "_stacked_key", None) != key:
            self._stacked = (
                torch.cat([self.carry.weight, self.transform.weight]).detach(),
                torch.cat([self.carry.bias, self.transform.bias]).detach(),
            )
            self._stacked_key = key
        return self._stacked


# The fewest filters whose inference pooling sums rows of the window table (an embedding_bag)
# instead of one GEMM over the windows: the official ELMo's 2048 filters pool several times faster
# that way; smaller char-CNNs (the shipped default has 512) keep the GEMM and, with it, the numbers
# their stores and recorded results were made with. Measurements: docs/benchmarks.md, issue #17.
TABLE_POOL_MIN_FILTERS = 1024
# Windows scored per embedding_bag call: their scores (4 MB at 2048 filters) stay in the cache until
# they are max-pooled.
_POOL_WINDOWS = 512


class CharCnnEncoder(nn.Module):
    """Maps character ids ``(n_words, max_chars)`` to token vectors ``(n_words, projection_dim)``.

    Row 0 of the embedding is the padding id (all zeros), as in bilm-tf's prediction graph; the
    HDF5 file's 261 rows fill rows 1..261.
    """

    def __init__(self, options: CharCnnOptions, projection_dim: int):
        super().__init__()
        self.options = options
        self.char_embedding = nn.Embedding(262, options.char_dim)  # 261 file rows + padding row 0
        self.convolutions = nn.ModuleList(
            nn.Conv1d(options.char_dim, n_filters, kernel_size=width) for width, n_filters in options.filters
        )
        self.highways = nn.ModuleList(Highway(options.n_filters, options.activation) for _ in range(options.n_highway))
        self.projection = nn.Linear(options.n_filters, projection_dim)
        self.activation = torch.relu if options.activation == "relu" else torch.tanh
        # inference pooling from the window table: None = with TABLE_POOL_MIN_FILTERS filters or
        # more, True / False = always / never (benchmarks/backbone_ablation.py flips it)
        self.window_table_pooling: bool | None = None

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        """``(n_words, max_chars)`` long -> ``(n_words, projection_dim)`` float."""
        if not torch.is_grad_enabled():
            pooled = self.pool_by_length(char_ids)
        elif windows_in_training:
            pooled = self.pool_windows(char_ids)
        else:
            pooled = self.pool_full_width(char_ids)
        return self.finish(pooled)

    def finish(self, pooled: torch.Tensor) -> torch.Tensor:
        """Max-pooled filter responses ``(n_words, n_filters)`` -> token vectors ``(n_words,
        projection_dim)``: activation, highway layers, projection."""
        token = self.activation(pooled)
        for highway in self.highways:
            token = highway(token)
        return self.projection(token)

    def pool_full_width(self, char_ids: torch.Tensor) -> torch.Tensor:
        """Max over every window position of each filter: ``(n_words, n_filters)`` before the
        activation (``act(max(x)) == max(act(x))`` for the monotonic ReLU/tanh)."""
        # (n_words, char_dim, max_chars): Conv1d wants channels first.
        chars = self.char_embedding(char_ids).transpose(1, 2)
        return torch.cat([conv(chars).max(dim=-1).values for conv in self.convolutions], dim=-1)

    def pool_by_length(self, char_ids: torch.Tensor) -> torch.Tensor:
        """Same result as :meth:`pool_full_width` (to float rounding), without convolving padding.

        A word of ``r`` real characters (``<bow>`` and ``<eow>`` included) is followed by padding
        up to ``max_chars``; windows that lie entirely in that padding all have the same value per
        filter, which the first window past the word already gives. So each word is convolved at
        its first ``r`` window positions only (far fewer than ``max_chars`` for most words),
        grouped with the words of the same ``r``. Every window is read ``widest`` characters wide
        (a width-``w`` filter's weights fill only its first ``w`` characters, zeros after), so all
        filters score a window at once, in one of two ways (:meth:`uses_window_table`): one GEMM
        over the windows' embedded characters, or the sum of ``widest`` rows of
        :meth:`window_table` per window (an ``embedding_bag``, ``_POOL_WINDOWS`` windows at a
        time so the scores stay in the cache until they are max-pooled)."""
        n_words, max_chars = char_ids.shape
        widest = max(width for width, _ in self.options.filters)
        table = self.uses_window_table()
        weight, bias = self.window_table() if table else self.stacked_filters()
        positions = torch.arange(1, max_chars + 1, device=char_ids.device)
        real = ((char_ids != PAD_ID) * positions).amax(dim=1)  # (n_words,) last non-padding id's index + 1
        # A window starting at t is valid for width w when it ends inside the row: t <= max_chars - w.
        last_start = max_chars - self.filter_widths(char_ids.device)  # (n_filters,)
        pooled = weight.new_empty(n_words, self.options.n_filters)
        for length in torch.unique(real).tolist():
            rows = (real == length).nonzero().squeeze(1)
            # window starts 0..length: the last one (if inside the row) is the all-padding window
            starts = min(length + 1, max_chars)
            chars = char_ids[rows, :starts]
            chars = torch.cat([chars, chars.new_full((len(rows), widest - 1), PAD_ID)], dim=1)
            outside = None
            if starts - 1 > int(last_start.min()):  # long words: drop windows that overrun the row
                outside = torch.arange(starts, device=char_ids.device)[:, None] > last_start[None, :]
            step = max(1, _POOL_WINDOWS // starts) if table else len(rows)
            for lo in range(0, len(rows), step):
                part = chars[lo : lo + step]
                if table:
                    scores = self._table_scores(part, weight, widest)
                else:
                    scores = self._gemm_scores(part, weight, widest)
                if outside is not None:
                    scores = scores.masked_fill(outside, float("-inf"))
                pooled[rows[lo : lo + step]] = scores.amax(dim=1).to(pooled.dtype)
        return pooled + bias

    def uses_window_table(self) -> bool:
        """Whether :meth:`pool_by_length` scores windows from :meth:`window_table`: with
        ``TABLE_POOL_MIN_FILTERS`` filters or more, unless ``window_table_pooling`` says."""
        chosen = getattr(self, "window_table_pooling", None)  # absent on modules pickled before it
        if chosen is not None:
            return chosen
        return self.options.n_filters >= TABLE_POOL_MIN_FILTERS

    def _gemm_scores(self, chars: torch.Tensor, weight: torch.Tensor, widest: int) -> torch.Tensor:
        """``chars (words, starts + widest - 1)`` and :meth:`stacked_filters`' weight -> ``(words,
        starts, n_filters)``."""
        words, starts = chars.shape[0], chars.shape[1] - widest + 1
        embedded = self.char_embedding(chars)  # (words, starts + widest - 1, char_dim)
        # (words * starts, widest * char_dim): each window's characters, position-major
        windows = embedded.unfold(1, widest, 1).transpose(2, 3).reshape(words * starts, -1)
        return (windows @ weight).view(words, starts, -1)

    def _table_scores(self, chars: torch.Tensor, table: torch.Tensor, widest: int) -> torch.Tensor:
        """``chars (words, starts + widest - 1)`` and :meth:`window_table` -> ``(words, starts,
        n_filters)``."""
        vocab = self.char_embedding.num_embeddings
        offsets = torch.arange(0, widest * vocab, vocab, device=chars.device)  # the table's block per offset
        windows = chars.unfold(1, widest, 1) + offsets  # (words, starts, widest): table rows
        scores = nn.functional.embedding_bag(windows.reshape(-1, widest), table, mode="sum")
        return scores.view(windows.shape[0], windows.shape[1], -1)

    def window_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``T (widest * vocab, n_filters)``, row ``k * vocab + c`` = character ``c``'s embedding
        times the filters' block at window offset ``k`` (:func:`window_table`), and the biases;
        made once per weight version, in the weights' dtype (also under autocast: the pooling
        that reads it is gathers and sums, which a reduced precision would barely speed up)."""
        tensors = (self.char_embedding.weight, *(p for conv in self.convolutions for p in (conv.weight, conv.bias)))
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
        if getattr(self, "_table_key", None) != key:
            with torch.no_grad(), torch.autocast(self.char_embedding.weight.device.type, enabled=False):
                weight, bias = self.stacked_filters()
                self._table = (window_table(self.char_embedding.weight, weight), bias)
            self._table_key = key
        return self._table

    def pool_windows(self, char_ids: torch.Tensor) -> torch.Tensor:
        """:meth:`pool_full_width` with autograd, over each word's own windows only
        (:class:`WindowMaxPool`): ``(n_words, max_chars)`` -> ``(n_words, n_filters)``."""
        weight, bias = self.stacked_filters()
        last_start = char_ids.shape[1] - self.filter_widths(char_ids.device)
        return WindowMaxPool.apply(self.char_embedding.weight, weight, char_ids, last_start) + bias

    def stacked_filters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every convolution as one matrix ``(widest * char_dim, n_filters)`` over a window of
        ``widest`` characters (rows position-major; a narrower filter's trailing rows are zero),
        and the biases ``(n_filters,)``."""
        widest = max(width for width, _ in self.options.filters)
        char_dim = self.options.char_dim
        blocks = []
        for (width, _), conv in zip(self.options.filters, self.convolutions):
            block = conv.weight.permute(2, 1, 0).reshape(width * char_dim, -1)  # (width * char_dim, n)
            blocks.append(nn.functional.pad(block, (0, 0, 0, (widest - width) * char_dim)))
        return torch.cat(blocks, dim=1), torch.cat([conv.bias for conv in self.convolutions])

    def filter_widths(self, device: torch.device) -> torch.Tensor:
        """``(n_filters,)``: the width of each filter."""
        return torch.cat([torch.full((count,), width, device=device) for width, count in self.options.filters])


class WindowPlan(NamedTuple):
    """The windows of one call: words sorted by their number of windows, each word's windows
    consecutive (start positions ascending). ``padded (n_words, max_chars + widest - 1)``: the
    char ids with room for the widest window at the last start; ``order (n_words,)``: the sorted
    words; ``groups``: ``(windows per word, words)`` for each run of equal counts, in sorted order."""

    padded: torch.Tensor
    order: torch.Tensor
    window_ids: torch.Tensor  # (n_windows, widest): each window's char ids
    groups: list[tuple[int, int]]


def window_plan(char_ids: torch.Tensor, widest: int) -> WindowPlan:
    """Each word's windows for ``char_ids (n_words, max_chars)``: a word of ``r`` real characters
    has ``min(r + 1, max_chars)`` (its own and the first all-padding one, see
    :meth:`CharCnnEncoder.pool_by_length`)."""
    n_words, max_chars = char_ids.shape
    device = char_ids.device
    positions = torch.arange(1, max_chars + 1, device=device)
    real = ((char_ids != PAD_ID) * positions).amax(dim=1)  # last non-padding id's index + 1
    counts, order = torch.sort((real + 1).clamp(max=max_chars), stable=True)
    padded = torch.cat([char_ids, char_ids.new_full((n_words, widest - 1), PAD_ID)], dim=1)
    word = torch.repeat_interleave(order, counts)  # (n_windows,) the word of each window
    first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    start = torch.arange(word.shape[0], device=device) - first  # each window's first position
    window_ids = padded.unfold(1, widest, 1)[word, start]  # (n_windows, widest)
    values, sizes = torch.unique_consecutive(counts, return_counts=True)
    return WindowPlan(padded, order, window_ids, list(zip(values.tolist(), sizes.tolist())))


class WindowMaxPool(torch.autograd.Function):
    """``(embedding (vocab, char_dim), filters (widest * char_dim, n_filters), char_ids (n_words,
    max_chars), last_start (n_filters,))`` -> ``(n_words, n_filters)``: each filter's maximum over
    the word's windows (bias not added), as :meth:`CharCnnEncoder.pool_full_width` gives it.
    ``filters`` is :meth:`CharCnnEncoder.stacked_filters`; a filter's windows start at
    ``0..last_start``.

    A window's score is ``sum_k embedding[c_k] filters[k]`` over its characters ``c_k`` (``k`` the
    offset in the window, ``filters[k]`` the ``(char_dim, n_filters)`` block of that offset), so
    the forward sums rows of the table ``T[k, c] = embedding[c] filters[k]`` (a tiny GEMM) for
    every window (one ``embedding_bag``, several times faster than the windows' GEMM, whose inner
    dimension is only ``widest * char_dim``), then takes the maximum per word and keeps its start
    (the first one in a tie, as ``max`` over all positions gives it). Only that window gets the
    word's gradient, so the backward sums the gradient per (offset, character id, filter) into
    ``H (widest, vocab, n_filters)``; ``d_filters[k] = embedding^T H[k]`` and ``d_embedding =
    sum_k H[k] filters[k]^T`` are small GEMMs too.

    Everything runs in the parameters' dtype, also under autocast: the work is gathers and sums,
    which a reduced precision would barely speed up.
    """

    @staticmethod
    def forward(ctx, embedding, filters, char_ids, last_start):
        with torch.autocast(char_ids.device.type, enabled=False):
            widest = filters.shape[0] // embedding.shape[1]
            plan = window_plan(char_ids, widest)
            pooled, argmax = _window_max(embedding, filters, plan, last_start)
        ctx.save_for_backward(embedding, filters, plan.padded, argmax)
        ctx.device_type = char_ids.device.type
        return pooled

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        embedding, filters, padded, argmax = ctx.saved_tensors
        with torch.autocast(ctx.device_type, enabled=False):
            d_embedding, d_filters = _window_max_backward(grad, embedding, filters, padded, argmax)
        return d_embedding, d_filters, None, None


def _window_max(
    embedding: torch.Tensor, filters: torch.Tensor, plan: WindowPlan, last_start: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward of :class:`WindowMaxPool`: ``pooled (n_words, n_filters)`` and the start
    position of each maximum ``argmax (n_words, n_filters)``."""
    vocab, char_dim = embedding.shape
    widest, n_filters = filters.shape[0] // char_dim, filters.shape[1]
    table = window_table(embedding, filters)
    offsets = torch.arange(0, widest * vocab, vocab, device=embedding.device)
    scores = nn.functional.embedding_bag(plan.window_ids + offsets, table, mode="sum")  # (n_windows, n_filters)
    # per group of words with as many windows: the maxima and their starts (empty ones: no words at all)
    values, where, done = [scores.new_empty(0, n_filters)], [plan.padded.new_empty(0, n_filters)], 0
    for count, words in plan.groups:
        block = scores[done : done + count * words].view(words, count, n_filters)
        done += count * words
        if count - 1 > int(last_start.min()):  # long words: drop windows that overrun the row
            outside = torch.arange(count, device=scores.device)[:, None] > last_start[None, :]
            block = block.masked_fill(outside, float("-inf"))
        best, first = first_max(block)
        values.append(best)
        where.append(first)
    n_words = plan.order.shape[0]
    pooled = scores.new_empty(n_words, n_filters).index_copy_(0, plan.order, torch.cat(values))
    argmax = plan.padded.new_empty(n_words, n_filters).index_copy_(0, plan.order, torch.cat(where))
    return pooled, argmax


def window_table(embedding: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """``embedding (vocab, char_dim)`` and ``filters (widest * char_dim, n_filters)``
    (:meth:`CharCnnEncoder.stacked_filters`) -> ``T (widest * vocab, n_filters)``, row ``k * vocab
    + c`` = ``embedding[c] @ filters[k * char_dim : (k + 1) * char_dim]``: a window's scores are the
    sum of its characters' rows, one per offset ``k``."""
    vocab, char_dim = embedding.shape
    widest, n_filters = filters.shape[0] // char_dim, filters.shape[1]
    return torch.matmul(embedding, filters.view(widest, char_dim, n_filters)).view(widest * vocab, n_filters)


def first_max(block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``block (words, count, n)`` -> the maximum over ``count`` and its first position, both
    ``(words, n)``: what ``block.max(dim=1)`` gives, several times faster (its CPU kernel with
    indices does not vectorise over the trailing dimension; ``amax`` does). A NaN maximum, which
    no window equals, is placed at the last window."""
    best = block.amax(dim=1)
    count = block.shape[1]
    hits = (block == best.unsqueeze(1)).view(torch.uint8)
    # count - t on each maximum (0 elsewhere): the largest is at the first maximum
    weights = torch.arange(count, 0, -1, dtype=torch.uint8 if count < 256 else torch.int32, device=block.device)
    first = count - (hits * weights[:, None]).amax(dim=1).long()
    return best, first.clamp_(max=count - 1)


def _window_max_backward(
    grad: torch.Tensor, embedding: torch.Tensor, filters: torch.Tensor, padded: torch.Tensor, argmax: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of :class:`WindowMaxPool` for ``grad (n_words, n_filters)``: ``d_embedding
    (vocab, char_dim)`` and ``d_filters (widest * char_dim, n_filters)``."""
    vocab, char_dim = embedding.shape
    widest, n_filters = filters.shape[0] // char_dim, filters.shape[1]
    grad = grad.to(filters.dtype).contiguous().view(-1)
    column = torch.arange(n_filters, device=grad.device)
    per_char = grad.new_zeros(widest, vocab * n_filters)  # H, flat (char id, filter) per offset
    for k in range(widest):
        chars = padded.gather(1, argmax + k)  # (n_words, n_filters): the char at offset k of each max window
        per_char[k].index_add_(0, (chars * n_filters + column).view(-1), grad)
    per_char = per_char.view(widest, vocab, n_filters)
    d_filters = torch.matmul(embedding.t(), per_char).view(widest * char_dim, n_filters)
    d_embedding = torch.einsum("kvf,kcf->vc", per_char, filters.view(widest, char_dim, n_filters))
    return d_embedding, d_filters
