"""Backbone speed: straightforward reference vs our fast path vs int8, on the official shapes.

Random weights with the shapes of the official "small" (2x1024_128_2048cnn_1xhighway) and
"original" (2x4096_512_2048cnn_2xhighway) models are written in the official HDF5 layout and
loaded through the normal loader. Input: CoNLL-2003 dev sentences (../shared/data/conll2003/eng.testa).

  (i)   reference: per-time-step loop over the full padded batch (the shape of AllenNLP's
        LstmCellWithProjection), char-CNN on every position, batches of 64 in file order;
  (ii)  fast path: what `elmo-tasks embed` runs by default (length-sorted batches of <= 256 sentences
        and <= 4000 tokens, input projections for all real positions in one GEMM, shrinking active
        batch, in-place steps, the two directions of a layer side by side on one core each,
        char-CNN once per word);
  (ii+) the same with the cell's pointwise math fused by torch.compile or TorchScript (opt-in,
        `fuse_cells`; compile time excluded and reported separately);
  (iii) int8: the fast path with dynamically quantised linear layers.

Max abs differences are taken against (i) over every token of every layer. GFLOP/s counts the
LSTM matrix products only (2 x multiply-adds), timed around the LSTM stacks, and is compared with
this machine's fp32 GEMM peak measured in the same run. The int8 rows count the same
(fp32-equivalent) FLOPs; int8 arithmetic is not bounded by the fp32 peak, so their share can
exceed 100 %.

    python benchmarks/backbone_speed.py [--threads 2] [--sentences-small 400] [--sentences-original 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import DOCS, REPO, command_line, git_revision, machine, write_section  # benchmarks/common.py

from elmo_core import load_bilm
from elmo_core.embed import embed_sentences, in_order_batches, plan_embedding_batches
from elmo_core.lstm import fuse_cells
from elmo_core.random_model import write_random_model
from elmo_core.reference import ReferenceLayers

FILTERS_2048 = [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]]
SHAPES = {
    "small": {
        "lstm": {
            "dim": 1024,
            "projection_dim": 128,
            "n_layers": 2,
            "cell_clip": 3,
            "proj_clip": 3,
            "use_skip_connections": True,
        },
        "char_cnn": {
            "embedding": {"dim": 16},
            "filters": FILTERS_2048,
            "n_highway": 1,
            "n_characters": 262,
            "max_characters_per_token": 50,
            "activation": "relu",
        },
    },
    "original": {
        "lstm": {
            "dim": 4096,
            "projection_dim": 512,
            "n_layers": 2,
            "cell_clip": 3,
            "proj_clip": 3,
            "use_skip_connections": True,
        },
        "char_cnn": {
            "embedding": {"dim": 16},
            "filters": FILTERS_2048,
            "n_highway": 2,
            "n_characters": 262,
            "max_characters_per_token": 50,
            "activation": "relu",
        },
    },
}


def conll_dev_sentences(limit: int) -> list[list[str]]:
    path = REPO.parent / "shared" / "data" / "conll2003" / "eng.testa"
    if not path.is_file():
        sys.exit(f"{path} is missing: this benchmark reads CoNLL-2003 dev sentences from ../shared/data")
    sentences, current = [], []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("-DOCSTART-"):
            if current:
                sentences.append(current)
                current = []
        else:
            current.append(line.split()[0])
    return sentences[:limit]


def gemm_peak_gflops(size: int = 2048, repeats: int = 6) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def lstm_flops(options: dict, sentences: list[list[str]]) -> float:
    lo = options["lstm"]
    per_token = 2 * lo["n_layers"] * 2 * (4 * lo["dim"] * 2 * lo["projection_dim"] + lo["dim"] * lo["projection_dim"])
    return per_token * sum(len(s) + 2 for s in sentences)


class LstmTimer:
    """Accumulates wall time spent inside ``bilm.run_lstms``."""

    def __init__(self, bilm):
        self.seconds = 0.0
        original = bilm.run_lstms

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        bilm.run_lstms = timed


def run(bilm, sentences, batches) -> tuple[dict[int, torch.Tensor], float, float]:
    timer = LstmTimer(bilm)
    started = time.perf_counter()
    outputs = {i: torch.from_numpy(a) for i, a in embed_sentences(bilm, sentences, batches, progress=False)}
    return outputs, time.perf_counter() - started, timer.seconds


def max_diff(a: dict, b: dict) -> float:
    return max(float((a[i] - b[i]).abs().max()) for i in a)


def bench_model(name: str, options: dict, sentences: list[list[str]], folder: Path, with_compile: bool) -> list[dict]:
    # ~unit-variance activations, like trained ELMo (whose layers reach magnitudes of ~1-10)
    opts, weights = write_random_model(folder / name, options, init="scaled-normal")
    tokens = sum(len(s) for s in sentences)
    flops = lstm_flops(options, sentences)
    rows = []
    bilm = load_bilm(options=opts, weights=weights)
    with torch.no_grad(), ReferenceLayers(bilm):
        reference, seconds, lstm_seconds = run(bilm, sentences, in_order_batches(len(sentences), 64))
    rows.append(
        {
            "model": name,
            "path": "(i) reference loop",
            "seconds": seconds,
            "lstm_seconds": lstm_seconds,
            "diff": 0.0,
            "magnitude": max(float(a.abs().max()) for a in reference.values()),
        }
    )
    bilm = load_bilm(options=opts, weights=weights)
    # exactly what `elmo-tasks embed` does by default: length-sorted batches of <= 256 sentences / 4000 tokens
    fast, seconds, lstm_seconds = run(bilm, sentences, plan_embedding_batches(sentences))
    rows.append(
        {
            "model": name,
            "path": "(ii) fast path",
            "seconds": seconds,
            "lstm_seconds": lstm_seconds,
            "diff": max_diff(fast, reference),
            "cache_hits": bilm.type_cache.hits,
            "cache_misses": bilm.type_cache.misses,
        }
    )
    if with_compile:
        for method, label in (("compile", "torch.compile"), ("script", "TorchScript")):
            bilm = load_bilm(options=opts, weights=weights)
            fuse_cells(bilm, method)
            started = time.perf_counter()
            run(bilm, sentences[:8], plan_embedding_batches(sentences[:8], max_batch=64))  # compiles
            compile_seconds = time.perf_counter() - started
            bilm.type_cache.clear()
            fused, seconds, lstm_seconds = run(bilm, sentences, plan_embedding_batches(sentences))
            rows.append(
                {
                    "model": name,
                    "path": f"(ii+) fast path, {label} cell (+{compile_seconds:.0f} s compile)",
                    "seconds": seconds,
                    "lstm_seconds": lstm_seconds,
                    "diff": max_diff(fused, reference),
                }
            )
    bilm = load_bilm(options=opts, weights=weights, precision="int8")
    quantised, seconds, lstm_seconds = run(bilm, sentences, plan_embedding_batches(sentences))
    rows.append(
        {
            "model": name,
            "path": "(iii) int8 fast path",
            "seconds": seconds,
            "lstm_seconds": lstm_seconds,
            "diff": max_diff(quantised, reference),
        }
    )
    for row in rows:
        row.update(tokens=tokens, tokens_per_s=tokens / row["seconds"], lstm_gflops=flops / row["lstm_seconds"] / 1e9)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sentences-small", type=int, default=400)
    parser.add_argument("--sentences-original", type=int, default=200)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile and TorchScript rows")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peak = gemm_peak_gflops()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, count in (("small", args.sentences_small), ("original", args.sentences_original)):
            rows += bench_model(name, SHAPES[name], conll_dev_sentences(count), Path(tmp), not args.no_compile)
            peak = max(peak, gemm_peak_gflops())
    magnitudes = ", ".join(f"{r['model']} {r['magnitude']:.2f}" for r in rows if "magnitude" in r)
    lines = [
        "| model | path | tokens | tokens/s | speed-up vs (i) | max abs diff vs (i) | LSTM GFLOP/s | LSTM share of GEMM peak |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        base = next(r for r in rows if r["model"] == row["model"] and r["path"].startswith("(i) "))
        lines.append(
            f"| {row['model']} | {row['path']} | {row['tokens']} | {row['tokens_per_s']:.0f} | "
            f"{row['tokens_per_s'] / base['tokens_per_s']:.2f}x | {row['diff']:.2e} | {row['lstm_gflops']:.1f} | "
            f"{100 * row['lstm_gflops'] / peak:.0f} % |"
        )
    text = (
        f"## Backbone speed (`benchmarks/backbone_speed.py`)\n\nCommand: `{command_line()}`; git {git_revision()}.\n"
        f"Machine: {machine()}. fp32 GEMM peak measured in this run (2048x2048 `torch.mm`, best of 6): **{peak:.1f} GFLOP/s** "
        f"with {args.threads} threads.\nRandom weights with the official shapes, loaded from the official HDF5 layout; "
        f"input: the first sentences of CoNLL-2003 eng.testa. Baseline (i) is our own straightforward per-time-step "
        f"implementation (AllenNLP's loop shape: one direction after the other, every step over the full padded batch). "
        f"Largest |output| of (i): {magnitudes}. The int8 rows' share counts fp32-equivalent FLOPs against the fp32 peak "
        f"(int8 GEMMs are not bounded by it).\n\n" + "\n".join(lines) + "\n"
    )
    print(text)
    if not args.no_write:
        write_section(DOCS / "benchmarks.md", "backbone-speed", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
