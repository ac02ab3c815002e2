"""How close can the "original" biLM's LSTM get to the GEMM peak? (issue #17's 70 % target)

Three measurements, the first two at the shapes of the official "original" model (cell 4096,
projection 512):

  1. The recurrent GEMM alone, ``(rows, 512) @ (512, 16384)``, at one thread, for the row counts a
     step sees: as our fp32 step runs it (oneDNN's linear with a weight packed once, adding the
     step's input gates: ``elmo_core/onednn.py``), as it ran before (MKL, the weight as a
     transposed view), with the weight stored row-major, and with MKL's packed weight
     (``torch.ops.mkl._mkl_linear``); against a 2048^3 product on the same thread (the better of
     MKL's ``torch.mm`` and oneDNN's linear).
     Beside it, the input gates' GEMM alone, ``(rows, 512) @ (512, 16384)`` + bias over 4,096
     positions made ``rows`` at a time, as the step's chunks make them: MKL's ``addmm`` into the
     scratch tensor, and oneDNN's linear with the weight packed once, copied into it (ours for large
     weights, 256 rows per call: ``_PACKED_CHUNK_ROWS``).
  2. The LSTM's GEMM throughput in a whole embedding pass (what ``backbone_speed.py`` reports as
     the LSTM's share of the peak) under three batch plans (``plan_embedding_batches``'s token and
     row bounds): the default and two larger ones, with the peak RSS of each plan in a fresh process.
  3. The LSTM's time with its recurrent and input GEMMs by MKL and by oneDNN's packed linear
     (the two weights are packed together or not at all), at three LSTM shapes ("small", cell 2048 / projection 256, "original"): where the default's size rule
     (``PACKED_RECURRENT_MIN_BYTES``) comes from.

Interleaved repetitions, medians. Needs a quiet machine: other processes' CPU time distorts every
figure here.

    python benchmarks/lstm_gemm_ceiling.py [--repeats 4] [--threads 2] [--sentences 300] [--no-write] [--section NAME]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from backbone_speed import (
    SHAPES,
    conll_dev_sentences,
    cpu_counters,
    official_shape,
    other_cpu_seconds,
    our_pass,
    performed_lstm_flops,
)
from common import DOCS, command_line, fp32_cpu_peak_gflops, git_revision, machine, write_section

from elmo_core import load_bilm, onednn
from elmo_core.embed import plan_embedding_batches
from elmo_core.lstm import PACKED_RECURRENT_MIN_BYTES as MIN_BYTES
from elmo_core.random_model import write_random_model

HERE = Path(__file__).parent  # the subprocess runs here, so that `import backbone_speed` finds it
ROWS = (8, 32, 86, 128, 214, 256, 512)
INPUT_ROWS = (128, 256, 512, 1024)  # positions per input-gate GEMM call (the chunk size)
PLANS = ((4000, 256), (8000, 512), (16000, 1024))  # (max padded tokens, max rows); the first is the default
# LSTM shapes for the library comparison: "small" (the shipped default's LSTM too), one between, "original"
LIBRARY_SHAPES = {
    "small": SHAPES["small"],
    "cell 2048, projection 256": official_shape(2048, 256, 1),
    "original": SHAPES["original"],
}


def seconds_per_call(call, repeats: int) -> float:
    call()
    started = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - started) / repeats


def recurrent_gemm_rates(repeats: int) -> dict[int, dict[str, float]]:
    """GFLOP/s of the recurrent GEMM per row count, one thread: ``{rows: {layout: GFLOP/s}}``."""
    proj, gates = 512, 4 * 4096
    weight = torch.randn(gates, proj) * 0.05  # (4*cell, proj), as nn.Linear stores it
    row_major = weight.t().contiguous()  # (proj, 4*cell)
    packed = torch.ops.mkl._mkl_reorder_linear_weight(weight, 256) if torch.backends.mkl.is_available() else None
    onednn_packed = onednn.pack_weight(weight) if onednn.available() else None
    rates: dict[int, dict[str, list[float]]] = {rows: {} for rows in ROWS}
    for _ in range(repeats):
        for rows in ROWS:
            h, out, gates_in = torch.randn(rows, proj), torch.empty(rows, gates), torch.randn(rows, gates)
            calls = {}
            if onednn_packed is not None:
                calls["oneDNN packed, + input gates (ours)"] = lambda h=h, g=gates_in: onednn.linear_add(
                    h, onednn_packed, g
                )
            calls["MKL, transposed view (before)"] = lambda h=h, out=out: torch.mm(h, weight.t(), out=out)
            calls["MKL, row-major"] = lambda h=h, out=out: torch.mm(h, row_major, out=out)
            if packed is not None:
                calls["MKL packed"] = lambda h=h, n=rows: torch.ops.mkl._mkl_linear(h, packed, weight, None, n)
            for name, call in calls.items():
                rate = 2 * rows * proj * gates / seconds_per_call(call, 10) / 1e9
                rates[rows].setdefault(name, []).append(rate)
    return {rows: {name: statistics.median(v) for name, v in by.items()} for rows, by in rates.items()}


def input_gemm_rates(repeats: int) -> dict[int, dict[str, float]]:
    """GFLOP/s of the input gates' GEMM over 4,096 positions made ``rows`` at a time, one thread:
    ``{rows: {library: GFLOP/s}}``."""
    inputs, gates, positions = 512, 4 * 4096, 4096
    weight, bias = torch.randn(gates, inputs) * 0.05, torch.randn(gates)
    packed = onednn.pack_weight(weight) if onednn.available() else None
    x, out = torch.randn(positions, inputs), torch.empty(INPUT_ROWS[-1], gates)

    def made_in_chunks(rows: int, library: str) -> None:
        for lo in range(0, positions, rows):
            if library == "mkl":
                torch.addmm(bias, x[lo : lo + rows], weight.t(), out=out[:rows])
            else:
                out[:rows] = onednn.linear(x[lo : lo + rows], packed, bias)

    libraries = {"MKL `addmm` into the scratch tensor": "mkl"}
    if packed is not None:
        libraries["oneDNN packed, copied into it (ours)"] = "onednn"
    rates: dict[int, dict[str, list[float]]] = {rows: {} for rows in INPUT_ROWS}
    for _ in range(repeats):
        for rows in INPUT_ROWS:
            for name, library in libraries.items():
                seconds = seconds_per_call(lambda r=rows, lib=library: made_in_chunks(r, lib), 2)
                rates[rows].setdefault(name, []).append(2 * positions * inputs * gates / seconds / 1e9)
    return {rows: {name: statistics.median(v) for name, v in by.items()} for rows, by in rates.items()}


def plan_rates(sentences: list[list[str]], threads: int, repeats: int, work: Path) -> dict:
    """Per plan: median pass seconds and LSTM GFLOP/s over ``repeats`` interleaved passes."""
    options, weights = write_random_model(work / "original", SHAPES["original"], init="scaled-normal")
    bilm = load_bilm(options=options, weights=weights, precision="fp32")
    our_pass(bilm, sentences[:16], plan_embedding_batches(sentences[:16]))  # warm-up
    results: dict = {plan: {"seconds": [], "gflops": []} for plan in PLANS}
    for _ in range(repeats):
        for plan in PLANS:
            batches = plan_embedding_batches(sentences, *plan)
            run = our_pass(bilm, sentences, batches)
            results[plan]["seconds"].append(run["seconds"])
            flops = performed_lstm_flops(SHAPES["original"], sentences, batches)
            results[plan]["gflops"].append(flops / run["lstm_seconds"] / 1e9)
            results[plan]["batches"] = len(batches)
    for plan in PLANS:
        results[plan]["peak_rss_mb"] = peak_rss_mb(plan, len(sentences), threads, work)
    return results


def library_rates(sentences: list[list[str]], repeats: int, work: Path) -> dict:
    """Per LSTM shape: the LSTM's seconds per embedding pass with the recurrent GEMM by MKL's
    ``addmm_`` and by oneDNN's packed linear (``prepacked_weights`` False / True), interleaved."""
    results = {}
    for name, shape in LIBRARY_SHAPES.items():
        options, weights = write_random_model(work / f"lib-{name}", shape, init="scaled-normal")
        bilm = load_bilm(options=options, weights=weights, precision="fp32")
        layers = [*bilm.forward_layers, *bilm.backward_layers]
        batches = plan_embedding_batches(sentences)
        seconds: dict[str, list[float]] = {"MKL addmm_": [], "oneDNN packed": []}
        for wanted in (False, True):  # warm-up
            for layer in layers:
                layer.prepacked_weights = wanted
            our_pass(bilm, sentences[:16], plan_embedding_batches(sentences[:16]))
        for _ in range(repeats):
            for library, wanted in (("MKL addmm_", False), ("oneDNN packed", True)):
                for layer in layers:
                    layer.prepacked_weights = wanted
                seconds[library].append(our_pass(bilm, sentences, batches)["lstm_seconds"])
        weight_mb = layers[0].state_linear.weight.numel() * 4 / 2**20
        results[name] = {
            "weight_mb": weight_mb,
            "seconds": seconds,
            "default_packs": layers[0].recurrent_weight_is_large(),
        }
    return results


def peak_rss_mb(plan: tuple[int, int], count: int, threads: int, work: Path) -> float:
    """Growth of the peak RSS (MB) of a fresh process while it embeds the sentences once with
    ``plan`` (after loading the model and a warm-up on 16 sentences)."""
    # /proc/self/clear_refs "5" resets the peak RSS (Linux), so the load's own peak does not count.
    script = "\n".join(
        [
            "import torch",
            "from backbone_speed import conll_dev_sentences, our_pass",
            "from elmo_core import load_bilm",
            "from elmo_core.embed import plan_embedding_batches",
            f"torch.set_num_threads({threads})",
            f"s = conll_dev_sentences({count})",
            f"b = load_bilm(options={str(work / 'original' / 'options.json')!r}, "
            f"weights={str(work / 'original' / 'weights.hdf5')!r})",
            "our_pass(b, s[:16], plan_embedding_batches(s[:16]))",
            "def kb(key):",
            "    return int(next(x for x in open('/proc/self/status') if x.startswith(key)).split()[1])",
            "open('/proc/self/clear_refs', 'w').write('5')",
            "before = kb('VmRSS')",
            f"our_pass(b, s, plan_embedding_batches(s, {plan[0]}, {plan[1]}))",
            "print((kb('VmHWM') - before) / 1024)",
        ]
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=HERE)
    return float(done.stdout.split()[-1])


def rate_table(first_column: str, rates: dict[int, dict[str, float]], square: float) -> list[str]:
    """A markdown table of ``{rows: {variant: GFLOP/s}}``, each rate with its share of ``square``."""
    variants = list(next(iter(rates.values())))
    lines = ["| " + " | ".join([first_column, *variants]) + " |", "|---:|" + "---:|" * len(variants)]
    for rows, by_variant in rates.items():
        cells = " | ".join(f"{by_variant[name]:.0f} ({100 * by_variant[name] / square:.0f} %)" for name in variants)
        lines.append(f"| {rows} | {cells} |")
    return lines


def report(
    args,
    square: float,
    peak: float,
    gemm: dict,
    input_gemm: dict,
    plans: dict,
    libraries: dict,
    other: float,
    wall: float,
) -> str:
    lines = [
        '## How close can the LSTM get to the GEMM peak on "original"? (`benchmarks/lstm_gemm_ceiling.py`)',
        "",
        f"Command: `{command_line()}`; git {git_revision()}.",
        f"Machine: {args.machine}. Medians of {args.repeats} interleaved repetitions. Other processes used "
        f"{other:.0f} CPU s during this run's {wall:.0f} s.",
        "",
        f"**The recurrent GEMM alone**, `(rows, 512) @ (512, 16384)`, one thread, GFLOP/s (2048^3 on one thread, "
        f"the better library's: **{square:.0f}**):",
        "",
        *rate_table("rows", gemm, square),
        "",
        "**The input gates' GEMM alone**, `(rows, 512) @ (512, 16384)` + bias over 4,096 positions made `rows` "
        "at a time, one thread, GFLOP/s (MKL wants large chunks, 512 rows by default; oneDNN's packed weight 256):",
        "",
        *rate_table("rows per call", input_gemm, square),
    ]
    lines += [
        "",
        f"**The whole LSTM in an embedding pass** ({args.sentences} CoNLL-2003 dev sentences, {args.threads} threads; "
        f"fp32 peak {peak:.0f} GFLOP/s, 2048^3 at {args.threads} threads, the better library's), per batch plan:",
        "",
        "| plan (max padded tokens, max rows) | batches | pass s | LSTM GFLOP/s (share of peak) | peak RSS growth MB |",
        "|---|---:|---:|---:|---:|",
    ]
    for plan, row in plans.items():
        gflops = statistics.median(row["gflops"])
        label = f"{plan[0]}, {plan[1]}" + (" (default)" if plan == PLANS[0] else "")
        lines.append(
            f"| {label} | {row['batches']} | {statistics.median(row['seconds']):.2f} | "
            f"{gflops:.0f} ({100 * gflops / peak:.0f} %) | {row['peak_rss_mb']:.0f} |"
        )
    lines += [
        "",
        f"**The recurrent and input GEMMs' library, per LSTM shape** (the LSTM's seconds in an embedding pass of the same "
        f"sentences, {args.threads} threads, default plan; random weights; the default packs weights of "
        f"{MIN_BYTES / 2**20:.0f} MB or more):",
        "",
        "| LSTM | recurrent weight MB | MKL `addmm_` s | oneDNN packed s | oneDNN / MKL (paired passes) | default |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, row in libraries.items():
        mkl, dnn = row["seconds"]["MKL addmm_"], row["seconds"]["oneDNN packed"]
        paired = [b / a for a, b in zip(mkl, dnn)]
        lines.append(
            f"| {name} | {row['weight_mb']:.0f} | {statistics.median(mkl):.2f} | {statistics.median(dnn):.2f} | "
            f"{statistics.median(paired):.2f}x ({min(paired):.2f}–{max(paired):.2f}) | "
            f"{'oneDNN packed' if row['default_packs'] else 'MKL addmm_'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument(
        "--section",
        default="lstm-gemm-ceiling",
        help="the section of docs/benchmarks.md to (re)write; another name keeps the existing table",
    )
    args = parser.parse_args()
    counters, started = cpu_counters(), time.perf_counter()
    torch.set_num_threads(args.threads)
    args.machine = machine()  # before the one-thread part changes torch's thread count
    peak = max(fp32_cpu_peak_gflops().values())
    with tempfile.TemporaryDirectory() as tmp:
        sentences = conll_dev_sentences(args.sentences)
        plans = plan_rates(sentences, args.threads, args.repeats, Path(tmp))
        libraries = library_rates(sentences, args.repeats, Path(tmp))
    peak = max(peak, *fp32_cpu_peak_gflops().values())
    # One thread last: torch's pool, once shrunk to one thread, ran later GEMMs on one core.
    torch.set_num_threads(1)
    square = max(fp32_cpu_peak_gflops().values())
    gemm = recurrent_gemm_rates(args.repeats)
    input_gemm = input_gemm_rates(args.repeats)
    # the peak-RSS subprocesses are ours: not "other processes"
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    other = max(0.0, other_cpu_seconds(counters) - children.ru_utime - children.ru_stime)
    text = report(args, square, peak, gemm, input_gemm, plans, libraries, other, time.perf_counter() - started)
    print(text)
    json.dump(
        {
            "gemm": gemm,
            "input_gemm": input_gemm,
            "plans": {str(k): v for k, v in plans.items()},
            "libraries": libraries,
        },
        sys.stderr,
    )
    if not args.no_write:
        write_section(DOCS / "benchmarks.md", args.section, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
