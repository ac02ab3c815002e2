"""Pretrain an ELMo biLM (forward + backward LSTM language models over a character CNN).

Design choices, and why:
  * **Adaptive softmax** (``nn.AdaptiveLogSoftmaxWithLoss``) by default, one shared by both
    directions as in bilm-tf. It is an exact, normalised distribution, so heldout perplexity is the
    true one, and most tokens only touch the small head cluster, which is what makes a CPU run
    affordable. ``softmax: sampled`` is bilm-tf's **sampled softmax** instead
    (:class:`SampledSoftmax`: ``negative_samples`` log-uniform negatives per batch, bilm-tf's
    ``n_negative_samples_batch``); it trains a biased objective, so heldout perplexity is computed
    with its full softmax. ``docs/benchmarks.md`` measures the trade-off.
  * The softmax vocabulary is counted from the corpus, or read from ``vocab`` (``--vocab``, a
    bilm-tf vocabulary file). The corpus is one file or a glob of shards (``--train 'DIR/*.txt'``,
    bilm-tf's ``--train_prefix``), read in sorted order (:class:`~elmo_core.corpus.Corpus`).
    A bilm-tf options JSON maps onto this config: :mod:`elmo_core.bilm_tf`.
  * **Sentence batches** with zero initial state instead of bilm-tf's truncated BPTT with carried
    state: our backbone's default (and deterministic) inference mode starts every sentence from
    zero, so training does the same; every sentence is ``<S> w1 .. wn </S>``.
  * Gradient-norm clipping (10.0, bilm-tf's value); Adam instead of bilm-tf's Adagrad(0.2),
    because it converges faster in the short budgets this command is meant for.
  * Checkpoints are written atomically every ``checkpoint_every`` steps with the optimizer, all
    RNG states, the exact corpus position and the resolved config, so a ``kill -9`` loses at most
    that much work and the resumed run continues exactly where it was.

Configs are checked like task configs (:mod:`data.config`): ``${ENV:-default}`` expansion, dotted
``--set`` overrides (``model.lstm.dim=256``), and every unknown key, wrong type and out-of-range
value reported at once as one :class:`~data.config.ConfigError`, before any corpus file is read.

Resume rule (the one task training follows): re-running in the same ``--out`` resumes from
``checkpoint.pt``. Only :data:`RESUMABLE_KEYS` may differ from the config saved in the checkpoint:
the budgets ``max_tokens_seen`` and ``max_minutes``, the decay's ``lr_decay_tokens`` and
``lr_final_ratio`` (a re-planned schedule: the resumed run prints the learning rate at its position
under the old and the new schedule, and continues on the new one), and ``eval_every``,
``checkpoint_every`` and ``threads``, which do not change what the model learns (evaluation runs in eval mode under
``no_grad`` with its own RNG, so it draws no dropout masks and consumes no training randomness; a
checkpoint only writes; threads only change float rounding). Every other key (the model, the
vocabulary, the optimiser, the data order, ``heldout_sentences`` so that the perplexities in
``log.csv`` stay comparable) is refused with the changed keys named, and nothing is overwritten.
A ``vocab`` file is compared by content (the path may change, the words may not), and a run over
several shards refuses a resume whose glob now names other shards (the saved position would point
elsewhere). Keys added since a checkpoint was written count as their defaults.
A directory whose run never wrote a checkpoint is simply started again (vocabulary and log
rebuilt), so a corrected rerun is never blocked by a run that failed early.

On a GPU (``device: cuda``): the model, its optimiser state and each batch live on the GPU; the step
runs under bf16 autocast, or fp16 autocast with a dynamic loss scale (``torch.amp.GradScaler``: the
gradients are unscaled before clipping, and a step whose gradients overflowed is skipped), or fp32.
The checkpoint keeps the GPU's random generator and the loss scale, so a resumed GPU run continues
exactly; it loads on either device, so a run may move between CPU and GPU (``device`` is resumable).

Several processes (``torchrun --nproc_per_node N --no-python elmo-tasks pretrain ...``; ``WORLD_SIZE``
> 1): data-parallel training with DistributedDataParallel, over gloo on the CPU and over NCCL on GPUs
(``device: cuda``: rank ``r`` trains on ``cuda:LOCAL_RANK``), helpers in :mod:`elmo_core.distributed`.
  * **One batch stream, whatever the number of processes.** Every rank reads the corpus and builds
    the same global batches as one process would (same buffer, same shuffling RNG); rank ``r`` runs
    sentences ``r::N`` of each (sorted by length, so shares hold about equal tokens) and scales its
    NLL by ``N / (2 * targets of the whole batch)``. DDP averages gradients, so every rank applies
    the one-process gradient of the global batch; clipping and Adam then act on identical numbers.
    The result equals one process up to float summation order (<= 1e-5 after many steps) when
    ``dropout`` is 0: dropout masks are drawn per rank (each rank has its own generator, so torch's
    global RNG, which draws the sampled softmax's negatives, stays identical on all ranks).
  * A rank with an empty share (a batch of fewer sentences than ranks) runs the batch's first
    sentence with weight 0, and softmax tail clusters a rank's targets miss get exact zero
    gradients (those the whole batch misses get none, as in one process): every rank takes part in
    every all-reduce, so none waits forever.
  * **Rank 0 alone** checks the inputs, holds ``OUT/.lock``, reads the checkpoint and vocabulary and
    sends them to the others, evaluates heldout perplexity, and writes ``checkpoint.pt`` (with every
    rank's dropout generator), ``log.csv``, ``config.json``, ``vocab.txt``, the export and
    ``result.json`` (``world_size``). The position in the corpus is global, so a checkpoint resumes
    with any number of processes: the batches, model and optimiser continue exactly; only dropout
    masks start new per-rank streams (said on stderr).
  * A rank that dies or hangs: the others stop with one line naming it (a gloo error, or the
    process group's timeout, ``--timeout-minutes``, default 30) and torchrun exits non-zero; a
    rerun resumes from the last checkpoint. Every rank also stops within a second of torchrun's own
    death (``kill -9``), which torchrun cannot pass on to its workers.
"""

from __future__ import annotations

import csv
import ctypes
import hashlib
import io
import itertools
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from tqdm import tqdm

from data.config import (
    ConfigError,
    build,
    changed_keys,
    expand_env,
    get_dotted,
    non_negative,
    positive,
    read_with_overrides,
    to_dict,
    unit_interval,
)
from data.warnings import collecting

from .bilm import ElmoBiLm, add_sentence_boundaries
from .char_ids import batch_to_ids
from .checkpoint import python_rng_state
from .corpus import Corpus, batches_of
from .distributed import DEFAULT_TIMEOUT_MINUTES, Ranks
from .errors import BackboneUsageError, ElmoFileError, ModelNotAvailableError
from .io import (
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    check_output_dir,
    directory_lock,
    log_to_stderr,
)
from .loading import check_device, effective_precision
from .options import ElmoOptions, options_from_dict
from .progress import bar_disabled
from .store import rank_and_world
from .vocab import SPECIAL_TOKENS, Vocabulary
from .weights import load_weights, save_weights

# Keys a resumed run may change (see the module docstring): budgets and cadences, not the model.
RESUMABLE_KEYS = (
    "max_tokens_seen",
    "max_minutes",
    "eval_every",
    "checkpoint_every",
    "threads",
    "device",
    "strict",
    "lr_decay_tokens",
    "lr_final_ratio",
)
# Of those, the ones that change what the model learns from the resumed position on: the resumed run
# says so, with the learning rate before and after (a deliberate re-plan of the decay, say to fit
# less compute than planned, not a silent drift).
SCHEDULE_KEYS = ("lr_decay_tokens", "lr_final_ratio")


def _at_least(n: int) -> dict:
    return {"check": (lambda v: v >= n, f"an integer >= {n}")}


_SEED_RANGE = {"check": (lambda v: 0 <= v < 2**63, "an integer in [0, 2**63)")}
_DEVICE = {"check": (lambda v: re.fullmatch(r"cpu|cuda(:\d+)?", v) is not None, "cpu, cuda or cuda:N")}


@dataclass
class PretrainConfig:
    """Everything that defines a pretraining run (a YAML file maps onto it; see
    :func:`load_pretrain_config`). Counts and rates are > 0, ``dropout`` is in [0, 1), ``cutoffs``
    increase, ``max_minutes: null`` means no time budget."""

    model: dict[str, Any] = field(default_factory=dict)  # options.json content (char_cnn + lstm), required
    # Continue pretraining an existing biLM (bilm-tf's restart.py; domain adaptation): a model name
    # ("default", "default@v2", "small", ...) or a folder with options.json + weights.hdf5. Its
    # weights start the run; so does its softmax.pt when the vocabulary is the same (restore_softmax),
    # else the softmax starts fresh. `model` may be left out (taken from the model's options) or must
    # equal them.
    init_from: str | None = None
    # Only the softmax learns while tokens_seen < this (the biLM's gradients are dropped before each
    # step): with init_from, the fresh softmax first learns to read the continued biLM, so that its
    # early, random errors do not reach the biLM's weights (docs/pretraining.md, "Continuing a biLM").
    softmax_warmup_tokens: int = field(default=0, metadata=non_negative)
    vocab: str | None = None  # a vocabulary file (bilm-tf's format); null: counted from the corpus
    min_count: int = field(default=3, metadata=positive)
    max_vocab: int = field(default=50_000, metadata=_at_least(len(SPECIAL_TOKENS) + 1))
    vocab_sample_sentences: int = field(default=300_000, metadata=positive)  # vocabulary counted on this prefix
    softmax: Literal["adaptive", "sampled"] = "adaptive"
    cutoffs: list[int] = field(default_factory=lambda: [2_000, 10_000])  # adaptive softmax clusters
    negative_samples: int = field(default=8192, metadata=positive)  # sampled softmax: per batch and direction
    dropout: float = field(default=0.1, metadata=unit_interval)
    lr: float = field(default=1e-3, metadata=positive)
    # The learning rate over tokens seen: "constant" (lr throughout), or "linear"/"cosine" decay from
    # lr to lr * lr_final_ratio at lr_decay_tokens (null: max_tokens_seen), constant after that. Pin
    # lr_decay_tokens before raising max_tokens_seen on resume, or the schedule moves with the budget.
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    lr_final_ratio: float = field(default=0.1, metadata=unit_interval)
    lr_decay_tokens: int | None = field(default=None, metadata=positive)
    clip_norm: float = field(default=10.0, metadata=positive)
    batch_tokens: int = field(default=2_000, metadata=positive)
    buffer_sentences: int = field(default=20_000, metadata=positive)
    max_sentence_tokens: int = field(default=60, metadata=positive)
    max_tokens_seen: int = field(default=5_000_000, metadata=positive)
    max_minutes: float | None = field(default=None, metadata=positive)
    eval_every: int = field(default=500, metadata=positive)
    heldout_sentences: int = field(default=1_000, metadata=positive)
    checkpoint_every: int = field(default=200, metadata=positive)
    threads: int = field(default=2, metadata=positive)
    # Where the step runs: "cpu", or "cuda" / "cuda:N" (a GPU; under torchrun, "cuda" gives each rank
    # cuda:LOCAL_RANK and DDP's gradients go over NCCL). Like threads, it may change on resume: it only
    # changes float rounding (and which RNG draws dropout masks: see _seed_dropout).
    device: str = field(default="cpu", metadata=_DEVICE)
    # bf16: the training step under bf16 autocast (weights and optimiser stay fp32), on CPUs with bf16
    # matrix units (AMX, AVX512-BF16) and on GPUs that support it; fp32 with a warning elsewhere.
    # fp16 (GPU only): fp16 autocast with a dynamic loss scale (torch.amp.GradScaler). Heldout
    # perplexity is always fp32.
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    seed: int = field(default=13, metadata=_SEED_RANGE)
    # Sentences skipped as longer than max_sentence_tokens, control characters in tokens: counted
    # warnings, or errors when strict (data/warnings.py; ``--strict`` does the same).
    strict: bool = False

    def problems(self) -> list[str]:
        cutoffs = self.cutoffs
        if any(c <= 0 for c in cutoffs) or any(a >= b for a, b in zip(cutoffs, cutoffs[1:])):
            return [f"cutoffs: expected increasing integers > 0, found {cutoffs!r}"]
        if self.precision == "fp16" and not self.device.startswith("cuda"):
            return [
                f"precision: fp16 trains on a GPU only (device: cuda), found device {self.device!r}; "
                "on a CPU use fp32, or bf16 where the CPU has bf16 matrix units"
            ]
        return []


def learning_rate(cfg: PretrainConfig, tokens_seen: int) -> float:
    """The learning rate of the step that starts after ``tokens_seen`` tokens (see ``lr_schedule``).
    A function of the position alone, so a resumed run takes exactly the uninterrupted run's steps."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    horizon = cfg.lr_decay_tokens or cfg.max_tokens_seen
    progress = min(tokens_seen / horizon, 1.0)
    if cfg.lr_schedule == "linear":
        fraction = 1.0 - progress
    else:
        fraction = 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr * (cfg.lr_final_ratio + (1.0 - cfg.lr_final_ratio) * fraction)


def count_vocabulary(cfg: PretrainConfig, sentences: Iterable[list[str]]) -> Vocabulary:
    """The vocabulary a run without a ``vocab`` file counts: the first ``vocab_sample_sentences`` of
    ``sentences`` (the corpus's sentences of at most ``max_sentence_tokens``, in order), words seen
    ``min_count`` times, at most ``max_vocab`` entries."""
    sample = itertools.islice(sentences, cfg.vocab_sample_sentences)
    return Vocabulary.build(sample, cfg.min_count, cfg.max_vocab)


# -- the model section: options.json content, checked key by key, then by options_from_dict ----------
@dataclass
class _EmbeddingSection:
    dim: int = field(default=16, metadata=positive)


@dataclass
class _CharCnnSection:
    embedding: _EmbeddingSection = field(default_factory=_EmbeddingSection)
    filters: list[list[int]] = field(default_factory=list)
    n_highway: int = field(default=0, metadata=non_negative)
    n_characters: Literal[261, 262] = 262
    max_characters_per_token: int = field(default=50, metadata=_at_least(3))  # <bow> char <eow>
    activation: Literal["relu", "tanh"] = "relu"

    def problems(self) -> list[str]:
        for pair in self.filters:
            if len(pair) != 2 or min(pair) <= 0:
                return [f"filters: expected [width, n_filters] pairs of integers > 0, found {pair!r}"]
        wide = [w for w, _ in self.filters if w > self.max_characters_per_token]
        if wide:
            return [
                f"filters: width {wide[0]} is wider than a token (max_characters_per_token="
                f"{self.max_characters_per_token})"
            ]
        return []


@dataclass
class _LstmSection:
    dim: int = field(default=0, metadata=positive)
    projection_dim: int = field(default=0, metadata=positive)
    n_layers: int = field(default=1, metadata=positive)
    cell_clip: float | None = field(default=None, metadata=non_negative)  # 0 or null: no clipping
    proj_clip: float | None = field(default=None, metadata=non_negative)
    use_skip_connections: bool = False


@dataclass
class _ModelSection:
    char_cnn: _CharCnnSection = field(default_factory=_CharCnnSection)
    lstm: _LstmSection = field(default_factory=_LstmSection)


@dataclass
class _ModelRoot:  # so that key paths (and suggestions) read model.lstm.dim
    model: _ModelSection = field(default_factory=_ModelSection)


_MODEL_REQUIRED = (
    "char_cnn.embedding.dim",
    "char_cnn.filters",
    "char_cnn.n_highway",
    "char_cnn.n_characters",
    "lstm.dim",
    "lstm.projection_dim",
    "lstm.n_layers",
)
# bilm-tf's options.json also holds its training options; here they are top-level keys (or moot).
_BILM_TF_TRAINING_KEYS = {
    "dropout": "dropout",
    "all_clip_norm_val": "clip_norm",
    "n_train_tokens": "max_tokens_seen",
    "n_epochs": "max_tokens_seen or max_minutes",
    "batch_size": "batch_tokens",
    "unroll_steps": "max_sentence_tokens",
    "n_tokens_vocab": "max_vocab",
    "n_negative_samples_batch": "negative_samples (with softmax: sampled)",
}


def _missing(tree: dict, dotted: str) -> bool:
    node = tree
    for key in dotted.split("."):
        if node is None:
            return True
        if not isinstance(node, dict):
            return False  # reported as a wrong type
        if key not in node:
            return True
        node = node[key]
    return False


def model_problems(model: dict) -> list[str]:
    """Problems of the ``model`` section (options.json content), as ``model.<key>: ...`` lines."""
    problems, rest = [], {}
    for key, value in model.items():
        if key == "bidirectional":
            problems.append("model.bidirectional: unknown key; pretraining is always bidirectional (remove it)")
        elif key in _BILM_TF_TRAINING_KEYS or (key in PretrainConfig.__dataclass_fields__ and key != "model"):
            where = _BILM_TF_TRAINING_KEYS.get(key, key)
            problems.append(f"model.{key}: unknown key; a training option: set {where} at the top level instead")
        else:
            rest[key] = value
    try:
        build(_ModelRoot, {"model": rest})
    except ConfigError as err:
        problems += err.problems
    problems += [f"model.{key}: missing (options.json field)" for key in _MODEL_REQUIRED if _missing(rest, key)]
    if problems:
        return problems
    try:  # the loader's own checks, the last word on what it accepts
        options_from_dict(model, "model")
    except ElmoFileError as err:
        text = str(err).removeprefix("model: ")
        quoted = re.search(r"'([A-Za-z_][\w.]*)'", text)
        if quoted is None:
            return [f"model: {text}"]
        rest_of_text = text[quoted.end() :] if text.startswith(quoted.group(0)) else f" {text}"
        return [f"model.{quoted.group(1)}:{rest_of_text}"]
    except (TypeError, ValueError) as err:
        return [f"model: not valid options.json content ({err})"]
    return []


def pretrain_config_from_tree(tree: dict, source: str | Path = "<config>") -> PretrainConfig:
    """The typed config for a plain (already overridden) tree: ``${ENV}`` expanded, every problem,
    the model section's included, reported at once."""
    tree = expand_env(tree)
    problems: list[str] = []
    config = None
    try:
        config = build(PretrainConfig, tree, source)
    except ConfigError as err:
        problems += err.problems
    if "model" not in tree and isinstance(tree, dict) and ("lstm" in tree or "char_cnn" in tree):
        raise ConfigError(
            source,
            [
                "model: missing, and lstm / char_cnn are at the top level: this looks like a bilm-tf or "
                "AllenNLP options.json; pass it with --bilm-tf-options instead of --config "
                "(elmo_core.bilm_tf.load_bilm_tf_config from Python)"
            ],
        )
    init_options = None
    if isinstance(tree, dict) and isinstance(tree.get("init_from"), str):
        try:
            init_options = json.loads(init_files(tree["init_from"])[0].read_text())
        except (ElmoFileError, ModelNotAvailableError, OSError, ValueError) as err:
            problems.append(f"init_from: {err}")
    if "model" not in tree and init_options is not None:
        tree = {**tree, "model": init_options}
        if config is not None:
            config = replace(config, model=init_options)
    if "model" not in tree:
        problems.append(
            "model: missing; the biLM's options.json content (char_cnn and lstm sections), "
            "or init_from: a model to continue"
        )
    elif isinstance(tree["model"], dict):
        model_issues = model_problems(tree["model"])
        problems += model_issues
        if init_options is not None and not model_issues:
            problems += init_model_problems(tree["model"], init_options, tree["init_from"])
    if problems:
        raise ConfigError(source, problems)
    return config


def init_files(spec: str) -> tuple[Path, Path]:
    """``(options.json, weights.hdf5)`` of ``init_from``: a folder holding both, or a model name."""
    from .models import is_model_name, resolve

    folder = Path(spec)
    if folder.is_dir():
        files = folder / "options.json", folder / "weights.hdf5"
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ElmoFileError(f"{folder}: expected options.json and weights.hdf5 there, missing {', '.join(missing)}")
        return files
    if is_model_name(spec):
        options, weights = resolve(spec)
        return Path(options), Path(weights)
    raise ElmoFileError(f"{spec!r} is neither a folder with options.json + weights.hdf5 nor a model name")


def init_model_problems(model: dict, init_options: dict, spec: str) -> list[str]:
    """The ``model.*`` keys that differ from the options of the model ``init_from`` continues."""
    mine, wanted = options_from_dict(model).to_json_dict(), options_from_dict(init_options).to_json_dict()
    return [
        f"model.{key}: {get_dotted(mine, key)!r} here, but {spec} has {get_dotted(wanted, key)!r}; "
        "leave `model` out to take the continued model's options"
        for key in changed_keys(mine, wanted)
    ]


def load_pretrain_config(path: str | Path, overrides: dict | None = None) -> PretrainConfig:
    """Read, override (dotted keys: ``{"model.lstm.dim": 256}``), expand and check a pretraining
    config; raises :class:`~data.config.ConfigError` listing every problem, before any corpus is read."""
    return pretrain_config_from_tree(*read_with_overrides(path, overrides))


def log_uniform_candidates(vocab_size: int, n: int, device=None) -> tuple[torch.Tensor, int]:
    """``n`` distinct ids drawn as TensorFlow's ``log_uniform_candidate_sampler(unique=True)``
    draws them (bilm-tf's sampler): P(k) = log((k + 2) / (k + 1)) / log(V + 1), which favours
    low ids, i.e. frequent words in a frequency-sorted vocabulary; draws are repeated until ``n``
    distinct ids have come. Returns the ids (in the order they first came) and the number of draws
    it took (which the expected counts need). Uses torch's global RNG, so a resumed run draws the
    same samples."""
    log_range = math.log(vocab_size + 1)
    drawn = torch.empty(0, dtype=torch.long, device=device)
    chunk = max(2 * n, 1024)
    while True:
        u = torch.rand(chunk, dtype=torch.float64, device=device)
        new = (torch.exp(u * log_range).floor().long() - 1).clamp_(0, vocab_size - 1)
        drawn = torch.cat([drawn, new])
        unique, inverse = torch.unique(drawn, return_inverse=True)
        if unique.numel() >= n:
            break
        chunk *= 2
    order = torch.arange(drawn.numel(), device=device)
    first = torch.full((unique.numel(),), drawn.numel(), dtype=torch.long, device=device)
    first = first.scatter_reduce(0, inverse, order, reduce="amin")
    earliest = first.argsort()[:n]
    return unique[earliest], int(first[earliest[-1]]) + 1


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_HEAP_UP_TO = 512 << 20  # bytes: blocks up to this size come from the heap, not a fresh mapping
_TRIM_ABOVE = 2**31 - 1  # bytes (mallopt takes an int): free memory at the heap's top kept up to this
KEEP_FREED_MEMORY_ENV = "ELMO_TASKS_KEEP_FREED_MEMORY"  # 0 / no / false / off: leave malloc alone
_GLIBC_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse, for the rest of the process; returns
    whether it did. Nothing is changed off Linux/glibc, with ``ELMO_TASKS_KEEP_FREED_MEMORY=0``,
    or when the environment already sets glibc's malloc (``MALLOC_*_`` or ``GLIBC_TUNABLES``).

    A training step allocates and frees tensors of the same large sizes every batch. By default
    glibc gives blocks above its mmap threshold fresh mappings, unmaps them when freed, and trims
    the heap when its top is free, so every step touches new pages and each first touch is a page
    fault (the kernel zeroes the page). Serving blocks up to 512 MiB from the heap and never
    trimming it lets the next step reuse the pages the last one freed; the process keeps its peak
    heap instead of shrinking between steps. The trainer calls this (not the import: it is a
    process-wide setting).
    """
    switch = os.environ.get(KEEP_FREED_MEMORY_ENV, "").strip().lower()
    chosen = any(name in os.environ for name in _GLIBC_MALLOC_ENV) or "malloc" in os.environ.get("GLIBC_TUNABLES", "")
    if switch in ("0", "no", "false", "off") or chosen or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the process's own C library
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):  # musl and others
        return False
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    heap = libc.mallopt(_M_MMAP_THRESHOLD, _HEAP_UP_TO)
    kept = libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_ABOVE)
    return bool(heap and kept)


class SampledSoftmax(nn.Module):
    """bilm-tf's softmax: an output layer over the whole vocabulary (``weight`` (V, dim), ``bias``),
    trained with TensorFlow's ``sampled_softmax_loss``.

    In training mode, ``forward(hidden (n, dim), target (n,))`` returns each target's log-probability
    under the sampled softmax: the target's logit against ``negative_samples`` negatives drawn once
    for the whole batch (:func:`log_uniform_candidates`), every logit corrected by the log of its
    expected count, and a negative that is a row's own target masked out ("accidental hits"). In eval
    mode it returns the exact log-probability of the full softmax (in row chunks, so a large
    vocabulary fits in memory), which is what heldout perplexity is computed with. A vocabulary of
    at most ``2 * negative_samples`` words is scored whole in training too: sampling most of it
    would cost as much and be inexact.
    """

    def __init__(self, dim: int, vocab_size: int, negative_samples: int):
        super().__init__()
        self.vocab_size, self.negative_samples = vocab_size, negative_samples
        self.weight = nn.Parameter(torch.randn(vocab_size, dim) / math.sqrt(dim))  # bilm-tf's initialiser
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    @property
    def samples_whole_vocabulary(self) -> bool:
        return 2 * self.negative_samples >= self.vocab_size

    def forward(self, hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not self.training or self.samples_whole_vocabulary:
            return self.full_log_probs(hidden, target)
        n = self.negative_samples
        samples, tries = log_uniform_candidates(self.vocab_size, n, hidden.device)

        def log_expected_count(ids: torch.Tensor) -> torch.Tensor:
            ids = ids.double()
            p = torch.log((ids + 2) / (ids + 1)) / math.log(self.vocab_size + 1)
            count = p * n if tries == n else -torch.expm1(tries * torch.log1p(-p))
            return torch.log(count).to(hidden.dtype)

        true_logit = (hidden * self.weight[target]).sum(-1) + self.bias[target] - log_expected_count(target)
        sampled_logits = hidden @ self.weight[samples].t() + self.bias[samples] - log_expected_count(samples)
        sampled_logits = sampled_logits.masked_fill(samples.unsqueeze(0) == target.unsqueeze(1), float("-inf"))
        logits = torch.cat([true_logit.unsqueeze(1), sampled_logits], dim=1)
        return true_logit - torch.logsumexp(logits, dim=1)

    def full_log_probs(self, hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        rows = max(1, (1 << 22) // self.vocab_size)  # about 16 MB of float32 logits at a time
        out = []
        for start in range(0, hidden.shape[0], rows):
            logits = torch.addmm(self.bias, hidden[start : start + rows], self.weight.t())
            picked = logits.gather(1, target[start : start + rows].unsqueeze(1)).squeeze(1)
            out.append(picked - torch.logsumexp(logits, dim=1))
        return torch.cat(out) if out else hidden.new_zeros(0)


class BiLmLanguageModel(nn.Module):
    """The biLM plus a softmax over the word vocabulary shared by both directions: adaptive
    (default) or bilm-tf's sampled softmax (``softmax="sampled"``, :class:`SampledSoftmax`).

    ``forward(char_ids (batch, time, chars), word_ids (batch, time + 2))`` returns the summed
    negative log-likelihood of the forward and backward directions and their target counts (with
    the sampled softmax in training mode: the sampled loss, an estimate; in eval mode the exact NLL).
    ``word_ids`` hold ``<S>`` at 0, the words, ``</S>`` after them, and -1 as padding.
    """

    def __init__(
        self,
        options: ElmoOptions,
        vocab_size: int,
        cutoffs: list[int],
        dropout: float,
        softmax: str = "adaptive",
        negative_samples: int = 8192,
    ):
        super().__init__()
        self.bilm = ElmoBiLm(options, type_cache_size=0)
        dim = options.lstm.projection_dim
        if softmax == "sampled":
            self.softmax = SampledSoftmax(dim, vocab_size, negative_samples)
        elif softmax == "adaptive":
            # A vocabulary smaller than the configured clusters (tiny corpora) keeps one small tail.
            cutoffs = [c for c in cutoffs if c < vocab_size - 1] or [max(1, vocab_size // 2)]
            self.softmax = nn.AdaptiveLogSoftmaxWithLoss(dim, vocab_size, cutoffs, div_value=4.0)
        else:
            raise BackboneUsageError(f"softmax must be 'adaptive' or 'sampled', found {softmax!r}")
        self.dropout = nn.Dropout(dropout)
        # Under torchrun the trainer gives each rank its own dropout generator: the ranks then draw
        # different masks, and torch's global RNG, which the sampled softmax draws its negatives
        # from, advances identically on every rank. None (one process): nn.Dropout, global RNG.
        self.dropout_generator: torch.Generator | None = None

    @classmethod
    def from_config(cls, config: PretrainConfig, vocab_size: int) -> BiLmLanguageModel:
        return cls(
            options_from_dict(config.model),
            vocab_size,
            config.cutoffs,
            config.dropout,
            softmax=config.softmax,
            negative_samples=config.negative_samples,
        )

    def target_log_probs(self, hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if isinstance(self.softmax, SampledSoftmax):
            return self.softmax(hidden, target)
        return self.softmax(hidden, target).output

    def top_layer(self, char_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top LSTM layer *with* the boundary positions: ``(batch, time + 2, 2 * proj)``."""
        lengths = (char_ids[:, :, 0] > 0).sum(dim=1)
        with_bounds = add_sentence_boundaries(char_ids, lengths, self.bilm.options.char_cnn.max_chars)
        # With the types, the first LSTM layer's input GEMM runs once per distinct word.
        types = self.bilm.token_types(with_bounds)
        return self.bilm.run_lstms(types.embeddings(), lengths + 2, types=types)[-1], lengths

    def idle_parameters(self, word_ids: torch.Tensor) -> list[nn.Parameter]:
        """The parameters that a batch with these ``word_ids`` (:func:`word_id_batch`) gives no
        gradient: the adaptive softmax's tail clusters that none of its targets falls in (the
        targets of both directions together are all its ids >= 0)."""
        if not isinstance(self.softmax, nn.AdaptiveLogSoftmaxWithLoss):
            return []
        ids = word_ids[word_ids >= 0]
        bounds = self.softmax.cutoffs  # tail i holds the ids in [bounds[i], bounds[i + 1])
        idle: list[nn.Parameter] = []
        for i, tail in enumerate(self.softmax.tail):
            if not ((ids >= bounds[i]) & (ids < bounds[i + 1])).any():
                idle += list(tail.parameters())
        return idle

    def apply_dropout(self, top: torch.Tensor) -> torch.Tensor:
        """Dropout on the top layer ``(batch, time + 2, 2 * proj)``, from ``dropout_generator`` when set."""
        p, generator = self.dropout.p, self.dropout_generator
        if generator is None or not self.training or p == 0:
            return self.dropout(top)
        keep = torch.empty_like(top).bernoulli_(1 - p, generator=generator)
        return top * keep / (1 - p)

    def forward(self, char_ids: torch.Tensor, word_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        top, _ = self.top_layer(char_ids)
        return self.top_layer_nll(top, word_ids)

    def top_layer_nll(self, top: torch.Tensor, word_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`forward` from the top layer ``top (batch, time + 2, 2 * proj)`` on: dropout, then
        both directions' softmax."""
        top = self.apply_dropout(top)
        proj = self.bilm.options.lstm.projection_dim
        # Forward LM: position p predicts word p + 1; backward LM: position p predicts word p - 1.
        valid = word_ids[:, 1:] >= 0
        fwd_hidden, fwd_target = top[:, :-1, :proj][valid], word_ids[:, 1:][valid]
        bwd_hidden, bwd_target = top[:, 1:, proj:][valid], word_ids[:, :-1][valid]
        fwd_nll = -self.target_log_probs(fwd_hidden, fwd_target).sum()
        bwd_nll = -self.target_log_probs(bwd_hidden, bwd_target).sum()
        return {"forward_nll": fwd_nll, "backward_nll": bwd_nll, "targets": valid.sum()}


def word_id_batch(sentences: list[list[str]], vocab: Vocabulary) -> torch.Tensor:
    """``(batch, longest + 2)``: ``<S>`` ids, words, ``</S>``, then -1 padding."""
    longest = max(len(s) for s in sentences)
    ids = torch.full((len(sentences), longest + 2), -1, dtype=torch.long)
    for row, sentence in enumerate(sentences):
        ids[row, 0] = vocab.bos
        ids[row, 1 : len(sentence) + 1] = torch.tensor([vocab.id(w) for w in sentence])
        ids[row, len(sentence) + 1] = vocab.eos
    return ids


def evaluate_perplexity(
    model: BiLmLanguageModel, sentences: list[list[str]], vocab: Vocabulary, batch_tokens: int
) -> dict[str, float]:
    """Heldout perplexity per direction and their mean (exp of the mean NLL per target)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    totals = {"forward_nll": 0.0, "backward_nll": 0.0, "targets": 0}
    with torch.no_grad():
        for batch in batches_of(list(sentences), batch_tokens, random.Random(0)):
            char_ids = batch_to_ids(batch, model.bilm.options.char_cnn.max_chars).to(device)
            out = model(char_ids, word_id_batch(batch, vocab).to(device))
            for key in totals:
                totals[key] += float(out[key])
    model.train(was_training)
    fwd = math.exp(totals["forward_nll"] / totals["targets"])
    bwd = math.exp(totals["backward_nll"] / totals["targets"])
    return {"forward_ppl": fwd, "backward_ppl": bwd, "mean_ppl": (fwd + bwd) / 2}


def training_device(spec: str, world: int = 1, local_rank: int = 0) -> torch.device:
    """The device this process trains on, for the config's ``device`` (checked here, before any
    corpus is read): under torchrun, ``cuda`` is ``cuda:LOCAL_RANK``, one GPU per process."""
    check_device(spec)  # a CPU-only torch build, or no GPU visible
    device = torch.device(spec)
    if device.type != "cuda":
        return device
    if world > 1:
        if device.index is not None:
            raise BackboneUsageError(
                f"device {spec!r} under torchrun ({world} processes): use device: cuda, and each rank "
                "trains on cuda:LOCAL_RANK (one GPU per process; NCCL cannot share one between ranks)"
            )
        device = torch.device("cuda", local_rank)
    index = device.index or 0
    visible = torch.cuda.device_count()
    if index >= visible:
        raise BackboneUsageError(
            f"device cuda:{index}: only {visible} GPU(s) visible"
            + (" (torchrun: --nproc_per_node at most the number of GPUs)" if world > 1 else "")
        )
    return torch.device("cuda", index)


def describe_device(device: torch.device) -> str:
    """``cpu`` or ``cuda:0 (NVIDIA H200)``, for result.json and logs."""
    if device.type != "cuda":
        return device.type
    return f"{device} ({torch.cuda.get_device_name(device)})"


@dataclass
class Position:
    """Where training is in the corpus: the first sentence of the current buffer (shard, line), how
    many of its batches are done, the buffer's shuffling RNG state, and counters."""

    epoch: int = 0
    buffer_start_line: int = 0
    buffer_start_shard: int = 0  # index into the sorted shards (0 for a one-file corpus)
    batches_done_in_buffer: int = 0
    buffer_rng_state: tuple | None = None
    step: int = 0
    tokens_seen: int = 0
    seconds: float = 0.0


SOFTMAX_FILE = "softmax.pt"


def export_model(model: BiLmLanguageModel, out_dir: Path) -> tuple[Path, Path]:
    """``options.json`` + ``weights.hdf5`` in the official layout, loadable by :func:`load_bilm`,
    and ``softmax.pt``: the softmax's weights (a few MB; not needed to embed, but a run that
    continues this one with ``init_from`` and the same ``vocab.txt`` restores them instead of
    learning a softmax from scratch)."""
    options_path, weights_path = out_dir / "options.json", out_dir / "weights.hdf5"
    save_weights(model.bilm, weights_path)  # atomic: PATH.part then rename
    atomic_write_json(options_path, model.bilm.options.to_json_dict())
    state = {name: tensor.detach().cpu() for name, tensor in model.softmax.state_dict().items()}  # loads anywhere
    softmax = {"kind": softmax_kind(model), "state_dict": state}
    atomic_torch_save(softmax, out_dir / SOFTMAX_FILE)
    return options_path, weights_path


def softmax_kind(model: BiLmLanguageModel) -> str:
    return "sampled" if isinstance(model.softmax, SampledSoftmax) else "adaptive"


def restore_softmax(model: BiLmLanguageModel, folder: Path, vocab: Vocabulary) -> str | None:
    """Load ``folder``'s ``softmax.pt`` into ``model`` when it fits: the same vocabulary (``vocab.txt``
    beside it, word for word), the same kind and shapes. Returns None when restored, else why not."""
    saved, words = folder / SOFTMAX_FILE, folder / "vocab.txt"
    if not saved.is_file() or not words.is_file():
        return f"no {SOFTMAX_FILE} + vocab.txt beside the weights (an official or shipped model exports none)"
    if Vocabulary.load(words).words != vocab.words:
        return f"this run's vocabulary differs from {words} (pass --vocab {words} to keep the softmax)"
    state = torch.load(saved, map_location="cpu", weights_only=True)
    if state.get("kind") != softmax_kind(model):
        return f"{saved} is a {state.get('kind')} softmax, this run's is {softmax_kind(model)}"
    mine = model.softmax.state_dict()
    if set(state["state_dict"]) != set(mine) or any(state["state_dict"][k].shape != mine[k].shape for k in mine):
        return f"{saved} has other shapes (cut-offs or sizes differ from this run's)"
    model.softmax.load_state_dict(state["state_dict"])
    return None


LOG_HEADER = ["step", "tokens_seen", "seconds", "train_loss", "tokens_per_s", "forward_ppl", "backward_ppl", "mean_ppl"]
CHECKPOINT_KEYS = ("model", "optimizer", "position", "torch_rng", "config")


class Pretrainer:
    """Runs (or resumes) a pretraining run in ``out_dir`` (the resume rule is in the module docstring)."""

    def __init__(
        self,
        config: PretrainConfig,
        train_path: str | Path,
        heldout_path: str | Path,
        out_dir: Path,
        progress: bool = True,
        wait: bool | None = None,
        log=log_to_stderr,
        timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES,
    ):
        """``wait``: when another process is pretraining in ``out_dir`` (it holds ``OUT/.lock``),
        wait for it (``True``), fail at once naming its PID (``False``), or wait unless
        ``ELMO_TASKS_NO_WAIT=1`` (``None``); ``log`` says that it waits. ``train_path`` and
        ``heldout_path`` are corpus files or globs of shards (:class:`~elmo_core.corpus.Corpus`),
        resolved when the run starts. ``timeout_minutes``: under torchrun, how long a rank waits
        for the others in a collective before it stops with a :class:`~elmo_core.errors.ProcessGroupError`."""
        if not isinstance(config, PretrainConfig):
            raise TypeError("Pretrainer needs a typed config: elmo_core.pretrain.load_pretrain_config(path, overrides)")
        self.config, self.train_path, self.heldout_path = config, train_path, heldout_path
        self.out_dir, self.progress, self.wait, self.log = Path(out_dir), progress, wait, log
        if not timeout_minutes > 0:
            raise BackboneUsageError(f"timeout_minutes must be > 0, found {timeout_minutes!r}")
        self.timeout_minutes = timeout_minutes
        self.checkpoint_path = self.out_dir / "checkpoint.pt"
        self.device = torch.device("cpu")  # resolved from the config by run() (training_device)
        self._scaler = torch.amp.GradScaler("cpu", enabled=False)  # made per precision by _train
        self._corpora: dict[str, Corpus] = {}
        self._schedule_announced = False

    @property
    def train_corpus(self) -> Corpus:
        if "train" not in self._corpora:
            self._corpora["train"] = Corpus(self.train_path, "--train")
        return self._corpora["train"]

    @property
    def heldout_corpus(self) -> Corpus:
        if "heldout" not in self._corpora:
            self._corpora["heldout"] = Corpus(self.heldout_path, "--heldout")
        return self._corpora["heldout"]

    def fixed_vocab(self) -> Vocabulary | None:
        """The configured ``vocab`` file, read and checked (None: the vocabulary is counted)."""
        if self.config.vocab is None:
            return None
        if not hasattr(self, "_fixed_vocab"):
            self._fixed_vocab = Vocabulary.load(self.config.vocab)
        return self._fixed_vocab

    # -- set-up ---------------------------------------------------------------------------
    def _prepare_vocab(self, reuse: bool) -> Vocabulary:
        """The run's vocabulary: the saved one when resuming, else the ``vocab`` file or counted
        afresh (a ``vocab.txt`` left by a run that never wrote a checkpoint may come from another config)."""
        path = self.out_dir / "vocab.txt"
        if reuse and path.is_file():
            return Vocabulary.load(path)
        cfg = self.config
        vocab = self.fixed_vocab()
        if vocab is None:
            sentences = (tokens for _, tokens in self.train_corpus.iter_sentences(cfg.max_sentence_tokens))
            vocab = count_vocabulary(cfg, sentences)
        vocab.save(path)
        return vocab

    def _read_checkpoint(self) -> dict | None:
        """The checkpoint's content, or None when the run never wrote one; a file that cannot be
        read is an :class:`ElmoFileError` naming it."""
        if not self.checkpoint_path.is_file():
            return None
        try:
            state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated, foreign or corrupt: torch raises many kinds
            raise ElmoFileError(
                f"{self.checkpoint_path}: cannot be read as a pretraining checkpoint (truncated "
                f"or corrupt: {type(err).__name__}); delete it to start the run again, "
                "or choose another --out"
            ) from None
        missing = [k for k in CHECKPOINT_KEYS if k not in state] if isinstance(state, dict) else list(CHECKPOINT_KEYS)
        if missing or not isinstance(state["config"], dict) or not isinstance(state["position"], dict):
            raise ElmoFileError(
                f"{self.checkpoint_path}: not a pretraining checkpoint (missing or malformed: "
                f"{', '.join(missing) or 'config/position'}); delete it to start the run again, "
                "or choose another --out"
            )
        return state

    def _resume_state(self) -> dict | None:
        """The checkpoint to resume from (None: start afresh). Only :data:`RESUMABLE_KEYS` may differ
        from the config it was written with; any other change is refused before anything is written."""
        state = self._read_checkpoint()
        if state is None:
            return None
        saved, current = dict(state["config"]), to_dict(self.config)
        for key, value in to_dict(PretrainConfig()).items():  # keys added since the checkpoint was written
            saved.setdefault(key, value)
        changed = [k for k in changed_keys(saved, current) if k not in RESUMABLE_KEYS and k != "vocab"]
        if changed:
            shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
            raise ElmoFileError(
                f"{self.checkpoint_path}: the run in {self.out_dir} was pretrained with a different "
                f"config (differs in: {shown}); only {', '.join(RESUMABLE_KEYS)} may change on "
                "resume. Choose another --out (nothing was overwritten)"
            )
        self._check_resumed_vocab(saved)
        self._check_resumed_shards(state)
        self._announce_schedule_change(saved, state)
        return state

    def _announce_schedule_change(self, saved: dict, state: dict) -> None:
        """Name the learning-rate jump a re-planned schedule makes at the resumed position (once)."""
        if self._schedule_announced:
            return
        tokens = int(state["position"].get("tokens_seen", 0))
        was = learning_rate(replace(self.config, **{k: saved[k] for k in SCHEDULE_KEYS + ("max_tokens_seen",)}), tokens)
        now = learning_rate(self.config, tokens)
        if not math.isclose(was, now, rel_tol=1e-12) and rank_and_world()[0] == 0:
            self._schedule_announced = True
            changed = [
                f"{k}: {saved[k]} -> {getattr(self.config, k)}"
                for k in SCHEDULE_KEYS + ("max_tokens_seen",)
                if saved[k] != getattr(self.config, k)
            ]
            self.log(
                f"learning-rate schedule re-planned on resume ({'; '.join(changed)}): at {tokens:,} tokens "
                f"the rate goes from {was:.3g} to {now:.3g}"
            )

    def _check_resumed_vocab(self, saved: dict) -> None:
        """A ``vocab`` file may move, not change; a run that counted its vocabulary cannot switch to a file."""
        fixed, run_vocab = self.fixed_vocab(), self.out_dir / "vocab.txt"
        if (saved.get("vocab") is None) != (fixed is None):
            was = (
                f"the vocabulary file {saved['vocab']}"
                if saved.get("vocab")
                else "a vocabulary counted from the corpus"
            )
            raise ElmoFileError(
                f"{self.checkpoint_path}: the run in {self.out_dir} was pretrained with {was}; a resumed run "
                "must keep it. Choose another --out (nothing was overwritten)"
            )
        if fixed is not None and run_vocab.is_file() and Vocabulary.load(run_vocab).words != fixed.words:
            raise ElmoFileError(
                f"{self.config.vocab}: differs from the vocabulary the run in {self.out_dir} was pretrained "
                f"with ({run_vocab}); a resumed run must keep it. Choose another --out (nothing was overwritten)"
            )

    def _check_resumed_shards(self, state: dict) -> None:
        """A run over shards resumes only over the same shards (its position is (shard, line))."""
        saved = state.get("train_shards")
        now = [p.name for p in self.train_corpus.shards]
        if saved is None or (len(saved) <= 1 and len(now) <= 1) or saved == now:
            return
        raise ElmoFileError(
            f"{self.checkpoint_path}: the run in {self.out_dir} was pretrained on {len(saved)} shard(s) "
            f"({', '.join(saved[:3])}{' ...' if len(saved) > 3 else ''}); --train {self.train_corpus.describe()} "
            "names others now, so the saved corpus position would point elsewhere. Pass the same shards, "
            "or choose another --out (nothing was overwritten)"
        )

    def _restore(self, model: nn.Module, optimizer, state: dict, scaler=None) -> Position:
        """Model, optimiser (its moments move to the model's device), position and RNG states."""
        self._load_model_state(model, state)
        try:
            optimizer.load_state_dict(state["optimizer"])
            position = Position(**state["position"])
            torch.set_rng_state(state["torch_rng"])
            if self.device.type == "cuda" and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"], self.device)
            if scaler is not None and scaler.is_enabled() and state.get("grad_scaler"):
                scaler.load_state_dict(state["grad_scaler"])
        except (RuntimeError, ValueError, TypeError, KeyError) as err:
            raise ElmoFileError(
                f"{self.checkpoint_path}: cannot resume from it ({type(err).__name__}: "
                f"{str(err)[:200]}); delete it to start the run again, "
                "or choose another --out"
            ) from None
        return position

    def _load_model_state(self, model: nn.Module, state: dict) -> None:
        try:
            model.load_state_dict(state["model"])
        except (RuntimeError, TypeError, AttributeError) as err:
            first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
            raise ElmoFileError(
                f"{self.checkpoint_path}: the checkpoint does not fit this model (written by another "
                f"version of elmo-tasks or another vocabulary): {first[:300]}"
            ) from None

    def _heldout(self) -> list[list[str]]:
        cfg = self.config
        return [
            t
            for _, (_, t) in zip(
                range(cfg.heldout_sentences), self.heldout_corpus.iter_sentences(cfg.max_sentence_tokens)
            )
        ]

    def evaluate_full_heldout(self) -> dict:
        """Perplexity of the checkpoint on every heldout sentence (of at most max_sentence_tokens)."""
        if rank_and_world()[1] > 1:
            raise BackboneUsageError("--evaluate-only runs in one process: run it without torchrun")
        state = self._resume_state()
        if state is None:
            raise ElmoFileError(f"{self.checkpoint_path}: no checkpoint to evaluate")
        torch.set_num_threads(self.config.threads)
        vocab = Vocabulary.load(self.out_dir / "vocab.txt")
        model = BiLmLanguageModel.from_config(self.config, len(vocab)).to(training_device(self.config.device))
        self._load_model_state(model, state)
        stats: dict = {}
        sentences = [t for _, t in self.heldout_corpus.iter_sentences(self.config.max_sentence_tokens, stats=stats)]
        result = evaluate_perplexity(model, sentences, vocab, self.config.batch_tokens)
        return {
            **result,
            "sentences": len(sentences),
            "tokens": sum(len(s) for s in sentences),
            "skipped_too_long": stats.get("too_long", 0),
        }

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> dict:
        """Check every path, then pretrain holding ``OUT/.lock``: a second process on the same
        directory waits, then resumes from what the first one left.

        Under torchrun every rank calls this (see "Several processes" in the module docstring):
        rank 0 checks, locks, reads and writes ``out_dir`` and sends the others the checkpoint and
        the vocabulary; every rank trains on its share of each batch. Rank 0 returns the result;
        the others return ``{"rank", "world_size"}`` once rank 0 has exported."""
        self._position = self._checkpointed_step = None  # what _where reports
        _, world = rank_and_world()
        self.device = training_device(self.config.device, world, int(os.environ.get("LOCAL_RANK", 0)))
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)  # NCCL and the object collectives use the current GPU
        ranks = Ranks.start(self.timeout_minutes, self.device.type)
        try:
            with ranks.guard(self._where):
                if not ranks.main:
                    state, words = ranks.follow()
                    self._train(ranks, state, Vocabulary(words))
                    ranks.barrier()  # rank 0 has written the export and result.json
                    return {"rank": ranks.rank, "world_size": ranks.world}
                with ranks.leading():
                    result = self._run_main(ranks)
                ranks.barrier()
                return result
        finally:
            ranks.close()

    def _run_main(self, ranks: Ranks) -> dict:
        cfg = self.config
        check_output_dir(self.out_dir, "--out")
        self.fixed_vocab()  # a bad vocabulary file is found before any corpus is read
        self._resume_state()  # before touching anything in out_dir
        with collecting(strict=cfg.strict):  # skipped sentences: counted warnings, errors when strict
            corpus = self.train_corpus.check(cfg.max_sentence_tokens)
            self.heldout_corpus.check(cfg.max_sentence_tokens)
        with directory_lock(self.out_dir, self.wait, self.log):
            result = self._run(ranks)
        # What training read of its corpus: the sentences it skipped as too long are counted.
        result["corpus"] = {
            "sentences": corpus["sentences"],
            "skipped_too_long": corpus["too_long"],
            "skipped_too_long_percent": round(100 * corpus["too_long"] / corpus["sentences"], 2),
            "max_sentence_tokens": cfg.max_sentence_tokens,
        }
        atomic_write_json(self.out_dir / "result.json", result)
        return result

    def _run(self, ranks: Ranks) -> dict:
        """Rank 0, holding the lock: read the checkpoint and vocabulary, send them, train."""
        state = self._resume_state()  # again, under the lock: a run we waited for may have moved on
        vocab = self._prepare_vocab(reuse=state is not None)
        ranks.lead((state, vocab.words))
        return self._train(ranks, state, vocab)

    def _where(self) -> str:
        """What this rank was doing, for :class:`~elmo_core.errors.ProcessGroupError`."""
        position = self._position
        if position is None:
            return "before training started"
        last = self._checkpointed_step
        return f"at step {position.step + 1} (last checkpoint: {'none' if last is None else f'step {last}'})"

    def _train(self, ranks: Ranks, state: dict | None, vocab: Vocabulary) -> dict:
        """The training loop, on every rank: each runs its share of every batch (:meth:`_step`);
        rank 0 alone evaluates, logs, checkpoints and exports. Every decision to evaluate,
        checkpoint or stop is taken on values that are equal on all ranks (the global position)."""
        cfg, main = self.config, ranks.main
        torch.set_num_threads(cfg.threads)
        keep_freed_memory()  # fewer page faults per step (see there)
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank (and on any device)
        device = self.device
        model = BiLmLanguageModel.from_config(cfg, len(vocab)).to(device)
        sampled = isinstance(model.softmax, SampledSoftmax)
        if main and sampled and model.softmax.samples_whole_vocabulary:
            self.log(
                f"sampled softmax: negative_samples={cfg.negative_samples} is at least half the vocabulary "
                f"({len(vocab)} words), so every word is scored (the full softmax)"
            )
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
        precision = effective_precision(cfg.precision, device)
        autocast = torch.autocast(
            device.type,
            dtype=torch.float16 if precision == "fp16" else torch.bfloat16,
            enabled=precision != "fp32",
        )
        # fp16's narrow range: the loss is scaled up before backward and the gradients unscaled
        # before clipping; a step whose gradients overflowed is skipped and the scale lowered.
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        position = Position(buffer_rng_state=random.Random(cfg.seed).getstate())
        if state is not None:
            position = self._restore(model, optimizer, state, scaler)
        elif cfg.init_from is not None:
            self._init_from(model, main, vocab)
        self._seed_dropout(model, ranks, state, position)
        trained = ranks.data_parallel(model, device)
        self._scaler = scaler
        self._position, self._checkpointed_step = position, position.step if state is not None else None
        heldout, log, writer = [], None, None
        if main:
            atomic_write_json(self.out_dir / "config.json", to_dict(cfg))
            heldout = self._heldout()
            log = self._open_log(position.step if state is not None else None)
            writer = csv.writer(log)
        model.train()
        bar = tqdm(
            total=cfg.max_tokens_seen,
            initial=position.tokens_seen,
            unit="tok",
            unit_scale=True,
            disable=bar_disabled(self.progress) if main else True,
            desc="pretraining",
        )
        started = time.perf_counter() - position.seconds
        window_loss, window_targets, window_start, window_tokens = 0.0, 0, time.perf_counter(), 0
        result: dict = {}
        already_done = self._budget_spent(position)  # a finished run re-run with the same budget
        try:
            for batch in () if already_done else self._batches(position):
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(cfg, position.tokens_seen)
                softmax_only = position.tokens_seen < cfg.softmax_warmup_tokens
                window_loss += self._step(trained, model, optimizer, batch, vocab, autocast, ranks, softmax_only)
                n_tokens = sum(len(s) for s in batch)
                position.step += 1
                position.tokens_seen += n_tokens
                if main and softmax_only and position.tokens_seen >= cfg.softmax_warmup_tokens:
                    self.log(
                        f"softmax warm-up done after {position.tokens_seen:,} tokens: the whole biLM learns from here"
                    )
                position.batches_done_in_buffer += 1
                position.seconds = time.perf_counter() - started
                if cfg.max_minutes is not None:  # the ranks' clocks differ; all must stop at the same step
                    position.seconds = ranks.max(position.seconds)
                window_targets += sum(len(s) + 1 for s in batch)
                window_tokens += n_tokens
                bar.update(n_tokens)
                done = self._budget_spent(position)
                if position.step % cfg.eval_every == 0 or done:
                    (window_loss,) = ranks.sum([window_loss])  # each rank summed its share
                    if main:
                        ppl = evaluate_perplexity(model, heldout, vocab, cfg.batch_tokens)
                        speed = window_tokens / max(time.perf_counter() - window_start, 1e-9)
                        self._write_log_row(log, writer, position, window_loss / max(window_targets, 1), speed, ppl)
                        scheduled = (
                            {} if cfg.lr_schedule == "constant" else {"lr": f"{optimizer.param_groups[0]['lr']:.2e}"}
                        )
                        bar.set_postfix(ppl=f"{ppl['mean_ppl']:.1f}", tok_s=f"{speed:.0f}", **scheduled)
                        result = self._result(ppl, position, precision, ranks, optimizer.param_groups[0]["lr"])
                    window_loss, window_targets, window_start, window_tokens = 0.0, 0, time.perf_counter(), 0
                if position.step % cfg.checkpoint_every == 0 or done:
                    self._save_checkpoint(model, optimizer, position, ranks)
                if done:
                    break
        finally:
            bar.close()
            if log is not None:
                log.close()
        if not main:
            return {}
        if already_done:
            result = self._result(
                evaluate_perplexity(model, heldout, vocab, cfg.batch_tokens),
                position,
                precision,
                ranks,
                optimizer.param_groups[0]["lr"],
            )
        export_model(model, self.out_dir)
        atomic_write_json(self.out_dir / "result.json", result)
        return result

    def _step(
        self, trained: nn.Module, model, optimizer, batch, vocab: Vocabulary, autocast, ranks: Ranks, softmax_only=False
    ) -> float:
        """One optimiser step on one (global) batch; returns this rank's share of the batch's summed
        NLL per direction (the window's train loss is its sum over ranks / targets). With
        ``softmax_only`` the biLM's gradients are dropped before clipping and the step (Adam skips a
        parameter without a gradient, moments included), so only the softmax learns.

        Each rank runs sentences ``rank::world`` of the batch (sorted by length, so the shares hold
        about equal tokens) and scales its NLL by ``world / (2 * targets of the whole batch)``:
        DDP averages the ranks' gradients, so every rank applies the one-process gradient of the
        batch's mean NLL, and clipping sees the one-process norm. A rank whose share is empty (a
        batch of fewer sentences than ranks) runs the batch's first sentence with weight 0: it must
        take part in DDP's gradient all-reduce, and adds exact zeros to it.

        DDP all-reduces every parameter every step, so a softmax tail cluster that none of this
        rank's targets falls in gets an exact zero gradient here (``0 * sum``); one that none of
        the whole batch's targets falls in has its gradient removed after the all-reduce, as one
        process never gives it one (Adam then skips it in both). This is DDP's
        ``find_unused_parameters`` without its graph search each step, nor its warning."""
        targets = sum(len(s) + 1 for s in batch)  # per direction: n words + </S> (or <S>)
        share, weight = batch[ranks.rank :: ranks.world], float(ranks.world)
        if not share:
            share, weight = batch[:1], 0.0
        device = self.device
        word_ids = word_id_batch(share, vocab).to(device)
        char_ids = batch_to_ids(share, model.bilm.options.char_cnn.max_chars).to(device)
        with autocast:
            out = trained(char_ids, word_ids)
            nll = out["forward_nll"] + out["backward_nll"]
            if ranks.world == 1:
                loss = nll / (2 * out["targets"])
            else:
                loss = nll * (weight / (2 * targets)) + sum(0.0 * p.sum() for p in model.idle_parameters(word_ids))
        optimizer.zero_grad(set_to_none=True)
        scaler = self._scaler
        scaler.scale(loss).backward()
        if ranks.world > 1:
            for parameter in model.idle_parameters(word_id_batch(batch, vocab).to(device)):
                parameter.grad = None
        if softmax_only:
            for parameter in model.bilm.parameters():
                parameter.grad = None
        scaler.unscale_(optimizer)  # clipping sees the true gradients (a no-op unless fp16)
        nn.utils.clip_grad_norm_(model.parameters(), self.config.clip_norm)
        scaler.step(optimizer)  # optimizer.step(), skipped under fp16 when a gradient overflowed
        scaler.update()
        return float(loss.detach()) * targets / ranks.world

    def _init_from(self, model: BiLmLanguageModel, main: bool, vocab: Vocabulary) -> None:
        """Start from the biLM ``init_from`` names (a fresh run; a resumed one has its checkpoint)."""
        from .io import file_sha256

        options, weights = init_files(self.config.init_from)
        load_weights(model.bilm, weights)
        why_fresh = restore_softmax(model, weights.parent, vocab)
        if main:
            self.log(
                f"continuing {self.config.init_from} ({weights}, sha256 {file_sha256(weights)[:16]}…): "
                "its char-CNN, highway, projection and LSTMs start this run; "
                + ("so does its softmax" if why_fresh is None else f"the softmax starts fresh: {why_fresh}")
            )

    def _write_log_row(self, log, writer, position: Position, train_loss: float, speed: float, ppl: dict) -> None:
        row = [
            position.step,
            position.tokens_seen,
            round(position.seconds, 1),
            round(train_loss, 4),
            round(speed, 1),
            round(ppl["forward_ppl"], 2),
            round(ppl["backward_ppl"], 2),
            round(ppl["mean_ppl"], 2),
        ]
        try:
            writer.writerow(row)
            log.flush()
        except OSError as err:  # a full disk: name the file
            raise OSError(err.errno, err.strerror or str(err), log.name) from err

    def _result(self, ppl: dict, position: Position, precision: str, ranks: Ranks, lr: float) -> dict:
        return {
            **ppl,
            "tokens_seen": position.tokens_seen,
            "seconds": position.seconds,
            "step": position.step,
            "precision": precision,
            "device": describe_device(self.device),
            "world_size": ranks.world,
            "lr": lr,  # the last step's learning rate (lr_schedule)
        }

    def _seed_dropout(self, model: BiLmLanguageModel, ranks: Ranks, state: dict | None, position: Position) -> None:
        """Under torchrun, each rank's dropout generator: restored from a checkpoint written by as
        many ranks, else seeded from (seed, rank, step). A checkpoint of another world size resumes
        with the same model, optimiser and batch stream; only dropout masks cannot continue (they
        are drawn per rank), which rank 0 says."""
        saved_world = None if state is None else state.get("world_size", 1)
        saved_device = None if state is None else torch.device(state.get("device", "cpu")).type
        if ranks.main and ranks.world == 1 and saved_device not in (None, self.device.type) and self.config.dropout:
            self.log(
                f"{self.checkpoint_path}: written on {saved_device}, resumed on {self.device.type}: the batches, "
                "model and optimiser continue exactly (up to float rounding); dropout masks come from "
                f"{self.device.type}'s random generator from here on"
            )
        if ranks.main and saved_world not in (None, ranks.world):
            self.log(
                f"{self.checkpoint_path}: written by {saved_world} process(es), resumed by {ranks.world}: the "
                "batches, model and optimiser continue exactly (the batch stream does not depend on the "
                "number of processes)"
                + (
                    f"; dropout masks come from new per-rank streams (dropout={self.config.dropout})"
                    if self.config.dropout
                    else ""
                )
            )
        if ranks.world == 1:
            return
        generator = torch.Generator(device=self.device)  # masks are drawn where the activations are
        saved = None if state is None else state.get("dropout_rng")
        if saved_world == ranks.world and saved_device == self.device.type and saved is not None:
            generator.set_state(saved[ranks.rank])
        else:
            key = f"{self.config.seed}/dropout/rank {ranks.rank}/step {position.step}".encode()
            generator.manual_seed(int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1)
        model.dropout_generator = generator

    def _budget_spent(self, position: Position) -> bool:
        cfg = self.config
        return position.tokens_seen >= cfg.max_tokens_seen or (
            cfg.max_minutes is not None and position.seconds >= 60 * cfg.max_minutes
        )

    def _open_log(self, resumed_step: int | None):
        """``log.csv`` opened for appending: started afresh for a new run; when resuming, rows written
        after the checkpoint (their steps are about to be trained again) are dropped."""
        path = self.out_dir / "log.csv"
        rows = []
        if resumed_step is not None and path.is_file():
            with path.open(newline="") as old:
                rows = [r for r in list(csv.reader(old))[1:] if r and r[0].isdigit() and int(r[0]) <= resumed_step]
        text = io.StringIO(newline="")
        csv.writer(text).writerows([LOG_HEADER, *rows])
        atomic_write_text(path, text.getvalue())
        return path.open("a", newline="")

    def _batches(self, position: Position) -> Iterator[list[list[str]]]:
        """Batches from the saved position on, forever (epochs wrap); ``position`` is updated in
        place at buffer boundaries so a checkpoint always names a reproducible place."""
        cfg = self.config
        while True:
            stream = self.train_corpus.iter_sentences(
                cfg.max_sentence_tokens, start=(position.buffer_start_shard, position.buffer_start_line)
            )
            while True:
                buffer, last = [], None
                for where, tokens in stream:
                    buffer.append(tokens)
                    last = where
                    if len(buffer) >= cfg.buffer_sentences:
                        break
                if not buffer:
                    break
                rng = random.Random()
                rng.setstate(python_rng_state(position.buffer_rng_state))
                batches = batches_of(buffer, cfg.batch_tokens, rng)
                yield from batches[position.batches_done_in_buffer :]
                position.buffer_start_shard, position.buffer_start_line = last[0], last[1] + 1
                position.batches_done_in_buffer = 0
                position.buffer_rng_state = rng.getstate()
            position.epoch += 1
            position.buffer_start_shard = position.buffer_start_line = 0

    def _save_checkpoint(self, model, optimizer, position: Position, ranks: Ranks) -> None:
        """Rank 0 writes the checkpoint; under torchrun it holds every rank's dropout generator."""
        generator = model.dropout_generator
        dropout_rng = ranks.gather(None if generator is None else generator.get_state())
        if ranks.main:
            atomic_torch_save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "position": asdict(position),
                    "torch_rng": torch.get_rng_state(),
                    # On a GPU, one process's dropout masks (and the sampled softmax's negatives) come
                    # from the GPU's generator: kept so that a resume on a GPU continues them exactly.
                    "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                    "grad_scaler": self._scaler.state_dict() if self._scaler.is_enabled() else None,
                    "device": str(self.device),
                    "config": to_dict(self.config),
                    "train_shards": [p.name for p in self.train_corpus.shards],
                    "world_size": ranks.world,
                    "dropout_rng": dropout_rng if ranks.world > 1 else None,
                },
                self.checkpoint_path,
            )
        self._checkpointed_step = position.step
