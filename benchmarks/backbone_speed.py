"""Backbone speed against the real AllenNLP 2.10.1, side by side in one run.

Random weights with the shapes of the official "small" (2x1024_128_2048cnn_1xhighway) and
"original" (2x4096_512_2048cnn_2xhighway) models are written in the official HDF5 layout; both
implementations load the same files and embed the same sentences (the first sentences of CoNLL-2003
eng.testa) with the same number of threads:

  * AllenNLP: ``allennlp.modules.elmo.Elmo`` run by ../shared/anchors/allennlp/bench_allennlp_elmo.py
    in its own venv, in length-sorted batches of 64 (its best case), its LSTM state reset before
    every batch (what our default, stateless mode computes); time = ``batch_to_ids`` + forward.
    The row is skipped, with the reason, when the harness is not installed.
  * ours: what ``elmo-tasks embed`` runs by default (``plan_embedding_batches``, the type cache
    starting empty on every pass); time = ``batch_to_ids`` + forward + conversion to numpy; at each
    ``--precisions`` (fp32, bf16 where the CPU has bf16 matrix units, int8).

Every pass of every row is interleaved (AllenNLP, ours fp32, ours bf16, ours int8, then again) so a
noisy stretch hits all rows alike; the table gives medians, min-max spread and the ratio of medians.
Our outputs are compared with AllenNLP's for every token of every layer (max abs difference).
"LSTM GFLOP/s" counts the multiply-adds our fast path performs (after skipping the boundary steps
and computing the first layer's input GEMM once per distinct word; x2 for FLOPs), over the time
spent inside the LSTM stacks, and is compared with this machine's GEMM peak (2048^3, same threads)
in the row's precision, in fp32 the better of MKL's ``torch.mm`` and oneDNN's linear with a packed
weight (the two GEMM libraries the fp32 LSTM uses): as the best of the run's start and end, and
paired with a peak measured after each round of passes (this shared machine's speed drifts by
tens of percent within minutes; the paired share follows it).
Each pass also records the CPU time other processes used meanwhile (from /proc/stat): a large
value flags a noisy pass.
Every run is also added to the run ledger, docs/backbone_speed_runs.csv (``speed_ledger.py``), and
the summary across all runs is rewritten: one run cannot settle a target on these machines.

    python benchmarks/backbone_speed.py [--repeats 5] [--threads 2] [--sentences-small 1000]
        [--sentences-original 300] [--precisions fp32,bf16,int8] [--no-write | --ledger-only]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import (  # benchmarks/common.py
    DOCS,
    REPO,
    command_line,
    cpu_label,
    fp32_cpu_peak_gflops,
    gemm_peak_gflops,
    git_revision,
    machine,
    write_section,
)
from speed_ledger import LEDGER, append, read, summary  # benchmarks/speed_ledger.py

from elmo_core import fused_cell, load_bilm
from elmo_core.embed import embed_sentences, plan_embedding_batches
from elmo_core.hardware import bf16_matrix_units
from elmo_core.random_model import write_random_model

ANCHOR = REPO.parent / "shared" / "anchors" / "allennlp"
TOLERANCE = 1e-5
FILTERS_2048 = [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]]


def official_shape(dim: int, projection_dim: int, n_highway: int) -> dict:
    return {
        "lstm": {
            "dim": dim,
            "projection_dim": projection_dim,
            "n_layers": 2,
            "cell_clip": 3,
            "proj_clip": 3,
            "use_skip_connections": True,
        },
        "char_cnn": {
            "embedding": {"dim": 16},
            "filters": FILTERS_2048,
            "n_highway": n_highway,
            "n_characters": 262,
            "max_characters_per_token": 50,
            "activation": "relu",
        },
    }


SHAPES = {"small": official_shape(1024, 128, 1), "original": official_shape(4096, 512, 2)}


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


def performed_lstm_flops(options: dict, sentences: list[list[str]], batches: list[list[int]]) -> float:
    """FLOPs of our fast path's LSTM GEMMs: per direction, each sentence runs ``len + 1`` of its
    ``len + 2`` positions; the first layer's input GEMM runs once per distinct word of the batch."""
    lo = options["lstm"]
    cell, proj, layers = lo["dim"], lo["projection_dim"], lo["n_layers"]
    step = 4 * cell * proj + cell * proj  # recurrent + projection
    input_gemm = 4 * cell * proj
    macs = 0
    for batch in batches:
        positions = sum(len(sentences[i]) + 1 for i in batch)
        types = len({w for i in batch for w in sentences[i]}) + 2  # <S>, </S>
        macs += 2 * (
            layers * positions * step + (layers - 1) * positions * input_gemm + min(types, positions) * input_gemm
        )
    return 2 * macs


def other_cpu_seconds(started: tuple[float, float]) -> float:
    """CPU seconds used by other processes since ``started`` (from :func:`cpu_counters`)."""
    busy, own = cpu_counters()
    return max(0.0, (busy - started[0]) - (own - started[1]))


def cpu_counters() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    own = usage.ru_utime + usage.ru_stime
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return own, own
    ticks = [int(x) for x in fields]
    busy = sum(ticks[:3]) + sum(ticks[5:8])  # user nice system (idle iowait) irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK"), own


class LstmTimer:
    """Accumulates wall time spent inside ``bilm.run_lstm_batches`` (every batch's LSTMs)."""

    def __init__(self, bilm):
        self.seconds = 0.0
        original = bilm.run_lstm_batches

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        bilm.run_lstm_batches = timed


def our_pass(bilm, sentences, batches) -> dict:
    bilm.type_cache.clear()
    timer = LstmTimer(bilm)
    counters = cpu_counters()
    started = time.perf_counter()
    outputs = dict(embed_sentences(bilm, sentences, batches, progress=False))
    seconds = time.perf_counter() - started
    del bilm.run_lstm_batches  # the timer's wrapper; back to the class's method
    return {"seconds": seconds, "lstm_seconds": timer.seconds, "other_cpu": other_cpu_seconds(counters), "out": outputs}


def allennlp_pass(options: Path, weights: Path, text: Path, threads: int, work: Path, dump: bool) -> dict:
    result = work / "allennlp.json"
    command = [
        str(ANCHOR / "aln-python"),
        str(ANCHOR / "bench_allennlp_elmo.py"),
        *("--options", str(options), "--weights", str(weights), "--text", str(text)),
        *("--batch-size", "64", "--threads", str(threads), "--reset-states", "--sort-by-length"),
        *("--repeats", "1", "--min-clean-passes", "0", "--json", str(result)),
    ]
    if dump:
        command += ["--dump", str(work / "allennlp.npz"), "--dump-n", "1000000"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"AllenNLP's harness failed ({' '.join(command)}):\n{done.stderr[-2000:]}")
    report = json.loads(result.read_text())
    return {"seconds": report["end_to_end_s_best"], "other_cpu": report["pass_foreign_cpu_s"][0]}


def allennlp_layers(npz: Path, sentences: list[list[str]]) -> dict[int, np.ndarray]:
    """Per sentence index, ``(3, n_tokens, dim)`` from the harness's dump (which holds the
    sentences in its own, length-sorted order, with their text)."""
    dump = np.load(npz)
    layers, offsets = dump["layers"], dump["offsets"]
    index = {" ".join(s): i for i, s in reversed(list(enumerate(sentences)))}
    return {index[str(text)]: layers[:, offsets[k] : offsets[k + 1]] for k, text in enumerate(dump["sentences"])}


def max_diff(ours: dict[int, np.ndarray], theirs: dict[int, np.ndarray]) -> float:
    return max(float(np.abs(ours[k] - layers).max()) for k, layers in theirs.items())


def harness_missing() -> str | None:
    if not (ANCHOR / "aln-python").is_file():
        return f"AllenNLP harness not found at {ANCHOR} (see its README)"
    probe = subprocess.run(
        [str(ANCHOR / "aln-python"), "-c", "import allennlp.modules.elmo"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return (
            f"AllenNLP harness at {ANCHOR} is not set up ({probe.stderr.strip().splitlines()[-1:]}); "
            "run its setup.sh (README there)"
        )
    return None


def round_peaks(bf16_units: str | None) -> dict[str, float]:
    """The GEMM peak beside one round of passes (fewer repeats than the run's start/end figure):
    fp32 the better library's, bf16 where the CPU has the units."""
    peaks = {"fp32": max(fp32_cpu_peak_gflops(repeats=3).values())}
    if bf16_units:
        peaks["bf16"] = gemm_peak_gflops(torch.bfloat16, repeats=3)
    return peaks


def bench_model(
    name: str, count: int, args, work: Path, precisions: list[str], missing: str | None, bf16_units: str | None
) -> tuple[list[dict], list[dict[str, float]]]:
    """The model's rows, and the GEMM peaks measured after each round of passes."""
    options_dict = SHAPES[name]
    sentences = conll_dev_sentences(count)
    tokens = sum(len(s) for s in sentences)
    # ~unit-variance activations, like trained ELMo (whose layers reach magnitudes of ~1-10)
    options, weights = write_random_model(work / name, options_dict, init="scaled-normal")
    text = work / f"{name}.txt"
    text.write_text("\n".join(" ".join(s) for s in sentences) + "\n")
    batches = plan_embedding_batches(sentences)
    flops = performed_lstm_flops(options_dict, sentences, batches)
    models = {p: load_bilm(options=options, weights=weights, precision=p) for p in precisions}
    for bilm in models.values():  # warm-up: first-call allocations, weight copies
        our_pass(bilm, sentences[:16], plan_embedding_batches(sentences[:16]))
    passes: dict[str, list[dict]] = {p: [] for p in (["allennlp"] if missing is None else []) + precisions}
    diffs: dict[str, float] = {}
    reference = None
    peaks = []
    for repeat in range(args.repeats):
        if missing is None:
            passes["allennlp"].append(allennlp_pass(options, weights, text, args.threads, work, dump=repeat == 0))
            if repeat == 0:
                reference = allennlp_layers(work / "allennlp.npz", sentences)
        for precision, bilm in models.items():
            result = our_pass(bilm, sentences, batches)
            if repeat == 0 and reference is not None:
                diffs[precision] = max_diff(result["out"], reference)
            del result["out"]
            passes[precision].append(result)
        peaks.append(round_peaks(bf16_units))
        print(f"  {name}: pass {repeat + 1}/{args.repeats} done", file=sys.stderr)
    rows = []
    for path, results in passes.items():
        seconds = [r["seconds"] for r in results]
        row = {
            "model": name,
            "path": path,
            "tokens": tokens,
            "tokens_per_s": [tokens / s for s in seconds],
            "other_cpu": [r["other_cpu"] for r in results],
        }
        if path != "allennlp":
            row["diff"] = diffs.get(path)
            rates = [flops / r["lstm_seconds"] / 1e9 for r in results]
            row["lstm_gflops"] = statistics.median(rates)
            # int8 GEMMs are not bounded by the fp32 peak: their share is fp32-equivalent
            key = "bf16" if path == "bf16" else "fp32"
            row["lstm_share"] = statistics.median(rate / peak[key] for rate, peak in zip(rates, peaks))
        rows.append(row)
    return rows, peaks


def ratio_to_allennlp(row: dict, rows: list[dict]) -> tuple[float, float, float] | None:
    """``row``'s speed-up over AllenNLP on the same model: the ratio of the medians, and the
    min and max of the pass-by-pass ratios; None without an AllenNLP row (or for AllenNLP's own)."""
    anchor = next((r for r in rows if r["model"] == row["model"] and r["path"] == "allennlp"), None)
    if anchor is None or row is anchor:
        return None
    speeds = row["tokens_per_s"]
    paired = [a / b for a, b in zip(speeds, anchor["tokens_per_s"])]
    return statistics.median(speeds) / statistics.median(anchor["tokens_per_s"]), min(paired), max(paired)


def ledger_rows(rows: list[dict], peaks: dict[str, float], run: dict) -> list[dict]:
    """This run's rows for the run ledger (``speed_ledger.py``); ``run`` gives ``threads``,
    ``repeats`` and ``session`` (may be empty)."""
    made = []
    for row in rows:
        versus = ratio_to_allennlp(row, rows)
        best = peaks["bf16" if row["path"] == "bf16" else "fp32"]
        made.append(
            {
                "date": datetime.date.today().isoformat(),
                "session": run.get("session") or "",
                "git": git_revision(),
                "cpu": cpu_label(),
                "threads": run["threads"],
                "repeats": run["repeats"],
                "model": row["model"],
                "implementation": row["path"],
                "tokens_per_s": statistics.median(row["tokens_per_s"]),
                "ratio": None if versus is None else versus[0],
                "paired_min": None if versus is None else versus[1],
                "paired_max": None if versus is None else versus[2],
                "lstm_share_best": row["lstm_gflops"] / best if "lstm_gflops" in row else None,
                "lstm_share_paired": row.get("lstm_share"),
                "max_diff": row.get("diff"),
                "source": command_line(),
            }
        )
    return made


def runs_section() -> str:
    """The summary of every run in the ledger, for docs/benchmarks.md."""
    return (
        "## Every side-by-side run (`benchmarks/backbone_speed.py`, `benchmarks/speed_ledger.py`)\n\n"
        f"Each run of `backbone_speed.py` adds its rows to `docs/{LEDGER.name}` (the rows of earlier runs were "
        "copied from this file's tables and notes; the CSV's `source` column says where). On these shared machines "
        "a run's median moves between runs by more than the targets' margins, so issue #17's targets are read "
        "here across runs: "
        "per CPU, the median of the runs' ratios (each the ratio of one run's median tokens/s), their range, and "
        'how many runs met the target (≥ 6x on "small", ≥ 2.5x on "original", fp32). The LSTM\'s share of the '
        "fp32 GEMM peak is counted both ways the run table gives it (of the run's best peak / paired with the peak "
        "measured beside each pass), with the number of runs that recorded it in brackets; the int8 rows' shares "
        "count fp32-equivalent FLOPs, so they can pass 100 %. Runs of the code before issue #17's main changes are "
        "not in the ledger. This table pools every version of the code since then; "
        "`python benchmarks/speed_ledger.py --since REV` gives it for one commit and its descendants.\n\n"
        + summary(read(LEDGER))
        + "\n"
    )


def format_table(rows: list[dict], peaks: dict[str, float]) -> list[str]:
    lines = [
        "| model | implementation | tokens | tokens/s median (min–max) | speed-up vs AllenNLP (median; min–max of paired passes) "
        "| max abs diff vs AllenNLP | LSTM GFLOP/s (share of the best peak; of the peak beside each pass) | other processes' CPU s per pass (median) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        speeds = row["tokens_per_s"]
        versus = ratio_to_allennlp(row, rows)
        if row["path"] == "allennlp":
            ratio = "1.00x"
        elif versus is None:
            ratio = "–"
        else:
            ratio = f"**{versus[0]:.2f}x** ({versus[1]:.2f}–{versus[2]:.2f})"
        label = "AllenNLP 2.10.1 (batches of 64, sorted)" if row["path"] == "allennlp" else f"elmo-tasks {row['path']}"
        diff = "–" if row.get("diff") is None else f"{row['diff']:.1e}"
        if "lstm_gflops" in row:
            best = peaks["bf16" if row["path"] == "bf16" else "fp32"]
            gemm = (
                f"{row['lstm_gflops']:.0f} ({100 * row['lstm_gflops'] / best:.0f} %; {100 * row['lstm_share']:.0f} %)"
            )
        else:
            gemm = "–"
        lines.append(
            f"| {row['model']} | {label} | {row['tokens']} | {statistics.median(speeds):.0f} "
            f"({min(speeds):.0f}–{max(speeds):.0f}) | {ratio} | {diff} | {gemm} | "
            f"{statistics.median(row['other_cpu']):.1f} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved passes per row (default 5)")
    parser.add_argument("--sentences-small", type=int, default=1000)
    parser.add_argument("--sentences-original", type=int, default=300)
    parser.add_argument("--models", default="small,original")
    parser.add_argument(
        "--precisions", default="fp32,bf16,int8", help="ours; bf16 is dropped where the CPU has no bf16 matrix units"
    )
    writing = parser.add_mutually_exclusive_group()
    writing.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone (table and ledger)")
    writing.add_argument(
        "--ledger-only",
        action="store_true",
        help=f"add the run to docs/{LEDGER.name} and its summary, but leave the section's table as it is "
        "(a rerun of the same code)",
    )
    parser.add_argument("--session", default="", help="a label for the ledger's session column (optional)")
    parser.add_argument(
        "--section",
        default="backbone-speed",
        help="the section of docs/benchmarks.md to (re)write; another name keeps the existing table "
        "(e.g. a second CPU's figures beside the first's)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    precisions = args.precisions.split(",")
    units = bf16_matrix_units()
    notes = []
    if "bf16" in precisions and units is None:
        precisions.remove("bf16")
        notes.append("bf16 row skipped: this CPU has no bf16 matrix units (no avx512_bf16 / amx_bf16 flag).")
    missing = harness_missing()
    if missing:
        notes.append(f"AllenNLP row skipped: {missing}.")
        print(notes[-1], file=sys.stderr)
    fp32_peaks = fp32_cpu_peak_gflops()
    peaks = {"bf16": gemm_peak_gflops(torch.bfloat16) if units else float("nan")}
    rows, beside = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            count = args.sentences_small if name == "small" else args.sentences_original
            model_rows, model_peaks = bench_model(name, count, args, Path(tmp), precisions, missing, units)
            rows += model_rows
            beside += [p["fp32"] for p in model_peaks]
    # best of the run's start and end, per library; the share is taken of the better library's
    fp32_peaks = {lib: max(rate, fp32_cpu_peak_gflops()[lib]) for lib, rate in fp32_peaks.items()}
    peaks["fp32"] = max(fp32_peaks.values())
    if units:
        peaks["bf16"] = max(peaks["bf16"], gemm_peak_gflops(torch.bfloat16))
    bf16_peak = f"; bf16 ({units}) **{peaks['bf16']:.0f} GFLOP/s**" if units else ""
    names = {"mkl": "`torch.mm` (MKL)", "onednn": "oneDNN's linear, weight packed"}
    fp32_by_library = ", ".join(f"{names[lib]} {rate:.0f}" for lib, rate in fp32_peaks.items())
    text = (
        f"## Backbone speed against AllenNLP (`benchmarks/backbone_speed.py`)\n\n"
        f"Command: `{command_line()}`; git {git_revision()}.\nMachine: {machine()}. GEMM peak measured in this run "
        f"(2048^3, {args.threads} threads): fp32 **{peaks['fp32']:.0f} GFLOP/s** ({fp32_by_library}){bf16_peak}.\n"
        f"Random weights with the official shapes in the official HDF5 layout, loaded by both; input: the first "
        f"{args.sentences_small} (small) / {args.sentences_original} (original) sentences of CoNLL-2003 eng.testa; "
        f"{args.repeats} interleaved passes per row. AllenNLP: length-sorted batches of 64, state reset per batch, "
        f"`batch_to_ids` + forward. Ours: `elmo-tasks embed`'s batch plan, type cache empty at the start of each pass, "
        f"`batch_to_ids` + forward + numpy (the LSTM cell's one-pass pointwise kernel, `fused_cell.py`: "
        f"{fused_cell.status()}). The int8 row's GEMM share counts fp32-equivalent FLOPs against the fp32 "
        f"peak (int8 GEMMs are not bounded by it). The LSTM's share is given twice: of the run's best peak (above), and "
        f"paired, each pass against the peak measured right after its round (fp32: median {statistics.median(beside):.0f}, "
        f"{min(beside):.0f}–{max(beside):.0f} GFLOP/s), so that a slow stretch of this shared machine lowers both sides; "
        f"median over passes.\n"
        + "".join(f"\n{note}\n" for note in notes)
        + "\n"
        + "\n".join(format_table(rows, peaks))
        + "\n"
    )
    print(text)
    if not args.no_write:
        if not args.ledger_only:
            write_section(DOCS / "benchmarks.md", args.section, text)
        append(
            LEDGER,
            ledger_rows(rows, peaks, {"threads": args.threads, "repeats": args.repeats, "session": args.session}),
        )
        write_section(DOCS / "benchmarks.md", "backbone-speed-runs", runs_section())
        print(runs_section())
    return 0


if __name__ == "__main__":
    sys.exit(main())
