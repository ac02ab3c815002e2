"""Pretraining throughput: our biLM LM against the same model built on torch's nn.LSTM(proj_size=...).

Both train the same architecture (char-CNN + highway + projection, forward and backward 2-layer
LSTMs with projection and skip connections, shared adaptive softmax) on the same batches of the
pretraining corpus, side by side in one process. nn.LSTM has no cell/projection clipping, so the
baseline model skips it (slightly less work). Training tokens/s, forward + backward + Adam step.
malloc is set up as the trainer sets it (``keep_freed_memory``; ``ELMO_TASKS_KEEP_FREED_MEMORY=0``
leaves it alone).

On a loaded machine, ``--timer cpu --rounds 5`` times by the process's CPU time (the GEMM peak
too) and reports the median of interleaved rounds (every model and precision once per round).
``--profile`` adds our step's CPU time per batch by part (char-CNN + highway, LSTMs, softmax,
clip + Adam), each part's forward and backward timed on its own.

    python benchmarks/pretrain_speed.py [--config configs/bilm_default.yaml] [--batches 12] [--threads 1]
        [--timer wall|cpu] [--rounds 1] [--profile]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import DOCS, REPO, command_line, gemm_peak_gflops, git_revision, machine, write_section
from torch import nn

from elmo_core.bilm import TokenTypes, add_sentence_boundaries
from elmo_core.char_ids import batch_to_ids
from elmo_core.corpus import batches_of, iter_sentences
from elmo_core.hardware import bf16_matrix_units
from elmo_core.options import options_from_dict
from elmo_core.pretrain import BiLmLanguageModel, keep_freed_memory, load_pretrain_config, word_id_batch
from elmo_core.vocab import Vocabulary


class TorchLstmLanguageModel(BiLmLanguageModel):
    """The same LM with each direction's layers as ``nn.LSTM(proj_size=...)`` (packed sequences)."""

    def __init__(self, options, vocab_size, cutoffs, dropout):
        super().__init__(options, vocab_size, cutoffs, dropout)
        lo = options.lstm
        self.torch_forward = nn.ModuleList(
            nn.LSTM(lo.projection_dim, lo.dim, proj_size=lo.projection_dim, batch_first=True)
            for _ in range(lo.n_layers)
        )
        self.torch_backward = nn.ModuleList(
            nn.LSTM(lo.projection_dim, lo.dim, proj_size=lo.projection_dim, batch_first=True)
            for _ in range(lo.n_layers)
        )
        del self.bilm.forward_layers, self.bilm.backward_layers

    def top_layer(self, char_ids):
        lengths = (char_ids[:, :, 0] > 0).sum(dim=1)
        with_bounds = add_sentence_boundaries(char_ids, lengths, self.bilm.options.char_cnn.max_chars)
        tokens = self.bilm.token_embeddings(with_bounds)
        lengths2 = (lengths + 2).cpu()  # pack_padded_sequence takes its lengths on the CPU
        reversed_tokens = reverse_padded(tokens, lengths2.to(tokens.device))
        fwd, bwd = tokens, reversed_tokens
        for k, (lf, lb) in enumerate(zip(self.torch_forward, self.torch_backward)):
            f_out = run_packed(lf, fwd, lengths2)
            b_out = run_packed(lb, bwd, lengths2)
            if k > 0:
                f_out, b_out = f_out + fwd, b_out + bwd
            fwd, bwd = f_out, b_out
        return torch.cat([fwd, reverse_padded(bwd, lengths2.to(tokens.device))], dim=-1), lengths


def run_packed(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first ``length`` steps (padding stays at the end)."""
    time_steps = x.shape[1]
    index = torch.arange(time_steps, device=x.device).unsqueeze(0).expand(x.shape[0], -1)
    rev = (lengths.unsqueeze(1) - 1 - index).clamp(min=0)
    rev = torch.where(index < lengths.unsqueeze(1), rev, index)
    return x.gather(1, rev.unsqueeze(-1).expand_as(x))


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


# Each precision's dtype: the autocast dtype of the step, and the GEMM peak measured for it.
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def train_step(model, optimizer, batch, vocab, precision: str, scaler=None) -> None:
    """One step as the trainer takes it (autocast in ``precision``; fp16 with its loss scale)."""
    device = next(model.parameters()).device
    with torch.autocast(device.type, dtype=PRECISION_DTYPES[precision], enabled=precision != "fp32"):
        out = model(batch_to_ids(batch).to(device), word_id_batch(batch, vocab).to(device))
        loss = (out["forward_nll"] + out["backward_nll"]) / (2 * out["targets"])
    optimizer.zero_grad()
    if scaler is None:
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    scaler.step(optimizer)
    scaler.update()


def synchronize(model) -> None:
    """Wait for the GPU's queued work (a no-op on the CPU), so a clock reading covers it."""
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training(
    model, optimizer, batches, vocab, precision: str = "fp32", clock=time.perf_counter, scaler=None
) -> float:
    """Training tokens/s over ``batches`` (the model and optimiser warmed up beforehand)."""
    model.train()
    synchronize(model)
    started = clock()
    for batch in batches:
        train_step(model, optimizer, batch, vocab, precision, scaler)
    synchronize(model)
    return sum(len(s) for b in batches for s in b) / (clock() - started)


PARTS = ("char-CNN + highway", "LSTMs", "softmax", "clip + Adam")


def profile_step(model, optimizer, batch, vocab, precision: str) -> dict[str, float]:
    """One training step of ``model`` (ours) with each part's forward and backward timed on its own
    (CPU seconds per part of :data:`PARTS`): the parts meet at detached tensors and the backward
    runs part by part in reverse, so the step does the same work as :func:`train_step`."""
    spent, last = dict.fromkeys(PARTS, 0.0), time.process_time()

    def lap(part: str) -> None:
        nonlocal last
        now = time.process_time()
        spent[part] += now - last
        last = now

    bilm = model.bilm
    char_ids, word_ids = batch_to_ids(batch), word_id_batch(batch, vocab)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        lengths = (char_ids[:, :, 0] > 0).sum(dim=1)
        types = bilm.token_types(add_sentence_boundaries(char_ids, lengths, bilm.options.char_cnn.max_chars))
        vectors_in = types.vectors.detach().requires_grad_()
        lap("char-CNN + highway")
        # As BiLmLanguageModel.top_layer: the first layer's input GEMM once per distinct word.
        top = bilm.run_lstms(vectors_in[types.index], lengths + 2, types=TokenTypes(vectors_in, types.index))[-1]
        top_in = top.detach().requires_grad_()
        lap("LSTMs")
        out = model.top_layer_nll(top_in, word_ids)
        loss = (out["forward_nll"] + out["backward_nll"]) / (2 * out["targets"])
    optimizer.zero_grad()
    loss.backward()
    lap("softmax")
    top.backward(top_in.grad)
    lap("LSTMs")
    types.vectors.backward(vectors_in.grad)
    lap("char-CNN + highway")
    nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    optimizer.step()
    lap("clip + Adam")
    return spent


def lstm_flops_per_token(model_options: dict, batches: list[list[list[str]]], per_word: bool = True) -> float:
    """Training FLOPs of the LSTM GEMMs per corpus token: forward (input, recurrent, projection
    GEMMs of both directions and every layer, on every position including <S>/</S>; with
    ``per_word`` the first layer's input GEMM once per distinct word of a batch, as our training
    path runs it, else on every position, as nn.LSTM does) x 3 for forward + backward; the
    char-CNN, highway and softmax are left out."""
    lo = model_options["lstm"]
    cell, proj, layers = lo["dim"], lo["projection_dim"], lo["n_layers"]
    input_gemm, step = 4 * cell * proj, 4 * cell * proj + cell * proj  # multiply-adds per row
    macs = 0
    for batch in batches[1:]:
        positions = sum(len(s) + 2 for s in batch)
        types = min(len({w for s in batch for w in s}) + 2, positions) if per_word else positions  # + <S>, </S>
        macs += 2 * (layers * positions * step + (layers - 1) * positions * input_gemm + types * input_gemm)
    tokens = sum(len(s) for b in batches[1:] for s in b)
    return 3 * 2 * macs / tokens


MODELS = (
    ("ours (ProjectedLstmLayer, clipping)", BiLmLanguageModel),
    ("nn.LSTM(proj_size) baseline (no clipping)", TorchLstmLanguageModel),
)


def profile_table(runs: dict, batches, vocab, precisions: list[str], rounds: int, flops: float, peaks: dict) -> str:
    """Our step's CPU ms per batch by part (:func:`profile_step`), the median of ``rounds``
    interleaved rounds over ``batches``, and the LSTM part's GEMM rate."""
    samples = {(part, p): [] for part in (*PARTS, "step") for p in precisions}
    for _ in range(rounds):
        for precision in precisions:
            model, optimizer, _ = runs[MODELS[0][0], precision]
            totals = dict.fromkeys(PARTS, 0.0)
            for batch in batches:
                for part, seconds in profile_step(model, optimizer, batch, vocab, precision).items():
                    totals[part] += seconds
            for part, seconds in totals.items():
                samples[part, precision].append(1000 * seconds / len(batches))
            samples["step", precision].append(sum(samples[part, precision][-1] for part in PARTS))
    median = {key: statistics.median(values) for key, values in samples.items()}
    tokens = sum(len(s) for b in batches for s in b) / len(batches)
    lines = [
        f"| part of our step (CPU ms per batch of {tokens:.0f} tokens) | " + " | ".join(precisions) + " |",
        "|---|" + "---:|" * len(precisions),
    ]
    lines += [
        f"| {part} | " + " | ".join(f"{median[part, p]:.0f}" for p in precisions) + " |" for part in (*PARTS, "step")
    ]
    rates = [flops * tokens / (median["LSTMs", p] / 1000) / 1e9 for p in precisions]
    lines.append(
        "| LSTM GEMM rate within the LSTMs' time | "
        + " | ".join(f"{r:.0f} GFLOP/s ({100 * r / peaks[p]:.0f} %)" for r, p in zip(rates, precisions))
        + " |"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "bilm_default.yaml")
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "data" / "corpus" / "heldout.txt.xz")
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument(
        "--batch-tokens",
        type=int,
        help="padded tokens per batch (default: the config's); a GPU wants far more than a CPU, since the "
        "LSTM's step launches the same kernels whatever the batch",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--precisions",
        default="fp32,bf16",
        help="fp32, bf16, fp16 (GPU only); bf16 (autocast) is dropped where the CPU has no bf16 matrix units "
        "or the GPU does not support it",
    )
    parser.add_argument("--timer", choices=sorted(CLOCKS), default="wall", help="cpu: the process's CPU time")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; tokens/s is their median")
    parser.add_argument("--profile", action="store_true", help="also our step's CPU time per batch by part (CPU)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: the step on a GPU (wall clock, synchronised)")
    parser.add_argument(
        "--section",
        help="the docs/benchmarks.md section to write (default: pretrain-speed, pretrain-speed-cuda on a GPU)",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from elmo_core.errors import BackboneUsageError
    from elmo_core.loading import check_device

    try:
        check_device(args.device)
    except BackboneUsageError as err:
        parser.error(str(err))
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    if on_gpu and (args.timer == "cpu" or args.profile):
        parser.error("--timer cpu and --profile time the CPU's work: on a GPU the step is timed by the wall clock")
    torch.set_num_threads(args.threads)
    malloc = "kept freed memory (as the trainer)" if keep_freed_memory() else "left as it was"
    clock = CLOCKS[args.timer]
    peak = functools.partial(gemm_peak_gflops, clock=clock, device=device, size=8192 if on_gpu else 2048)
    precisions = [p for p in args.precisions.split(",") if usable_precision(p, device)]
    peaks = {p: peak(PRECISION_DTYPES[p]) for p in precisions}
    config = load_pretrain_config(args.config, {"batch_tokens": args.batch_tokens} if args.batch_tokens else None)
    wanted = max(4000, (args.batches + 1) * config.batch_tokens // 15)  # enough sentences for every batch
    sentences = [t for _, t in itertools.islice(iter_sentences(args.corpus, config.max_sentence_tokens), wanted)]
    vocab = Vocabulary.build(sentences, min_count=1, max_size=config.max_vocab)
    batches = batches_of(sentences, config.batch_tokens, random.Random(0))[: args.batches + 1]
    options = options_from_dict(config.model)
    flops = lstm_flops_per_token(config.model, batches)
    model_flops = {MODELS[0][0]: flops, MODELS[1][0]: lstm_flops_per_token(config.model, batches, per_word=False)}
    runs = {}
    for precision in precisions:
        for name, cls in MODELS:
            torch.manual_seed(0)
            model = cls(options, len(vocab), config.cutoffs, config.dropout).to(device)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
            for batch in batches[: 3 if on_gpu else 1]:  # warms allocators, caches (and the GPU's kernels)
                train_step(model, optimizer, batch, vocab, precision, scaler)
            runs[name, precision] = (model, optimizer, scaler)
    samples = {key: [] for key in runs}
    for _ in range(args.rounds):
        for (name, precision), (model, optimizer, scaler) in runs.items():
            samples[name, precision].append(
                time_training(model, optimizer, batches[1:], vocab, precision, clock, scaler)
            )
    results = {key: statistics.median(values) for key, values in samples.items()}
    # the peak: best of the start and the end of the run (a noisy moment lowers one of them)
    peaks = {p: max(v, peak(PRECISION_DTYPES[p])) for p, v in peaks.items()}
    lines = [
        "| implementation | precision | training tokens/s | vs nn.LSTM, same precision | vs ours fp32 "
        "| LSTM GEMM share of the precision's peak |",
        "|---|---|---:|---:|---:|---:|",
    ]
    ours_fp32 = results[MODELS[0][0], "fp32"]
    for (name, precision), value in results.items():
        baseline = results[MODELS[1][0], precision]
        share = 100 * value * model_flops[name] / 1e9 / peaks[precision]
        lines.append(
            f"| {name} | {precision} | {value:.0f} | {value / baseline:.2f}x | {value / ours_fp32:.2f}x | {share:.0f} % |"
        )
    peak_text = ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in peaks.items())
    timing = "wall clock" if args.timer == "wall" else "CPU time of the process"
    if args.rounds > 1:
        ranges = "; ".join(f"{name.split(' ')[0]} {p} {min(v):.0f}–{max(v):.0f}" for (name, p), v in samples.items())
        timing += f", median of {args.rounds} interleaved rounds (tokens/s ranges: {ranges})"
    where = f"GPU: {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}); " if on_gpu else ""
    text = (
        f"## Pretraining throughput{' on a GPU' if on_gpu else ''} (`benchmarks/pretrain_speed.py`)\n\n"
        f"Command: `{command_line()}`; git {git_revision()}.\n"
        f"Machine: {where}{machine()}. Model: `{args.config.name}`; {len(batches) - 1} timed batches of <= {config.batch_tokens} "
        f"padded tokens from `{args.corpus.name}` (forward + backward + Adam), after one warm-up batch; bf16 = the "
        f"step under bf16 autocast (weights and Adam in fp32){'; fp16 likewise, with a dynamic loss scale' if 'fp16' in precisions else ''}. "
        f"Timed by {timing}; malloc {malloc}. "
        f"GEMM peaks measured in this run ({8192 if on_gpu else 2048}^3 `torch.mm`{', fp32 without TF32' if on_gpu else ''}): "
        f"{peak_text} (best of the run's start and end); the share counts the LSTM GEMMs each model performs "
        f"({flops / 1e6:.1f} MFLOP per token for ours, whose first layer's input GEMM runs once per distinct word; "
        f"{model_flops[MODELS[1][0]] / 1e6:.1f} for nn.LSTM; forward x 3).\n\n" + "\n".join(lines) + "\n"
    )
    if args.profile:
        text += "\n" + profile_table(runs, batches[1:], vocab, precisions, args.rounds, flops, peaks) + "\n"
    print(text)
    if not args.no_write:
        write_section(
            DOCS / "benchmarks.md", args.section or ("pretrain-speed-cuda" if on_gpu else "pretrain-speed"), text
        )
    return 0


def usable_precision(precision: str, device: torch.device) -> bool:
    """Whether ``precision`` is measured on ``device``: bf16 where there are bf16 matrix units (CPU)
    or bf16 support (GPU); fp16 on a GPU only."""
    if precision not in PRECISION_DTYPES:
        raise SystemExit(f"--precisions: expected fp32, bf16 or fp16, found {precision!r}")
    if device.type == "cuda":
        return precision != "bf16" or torch.cuda.is_bf16_supported()
    return precision == "fp32" or (precision == "bf16" and bf16_matrix_units() is not None)


if __name__ == "__main__":
    sys.exit(main())
