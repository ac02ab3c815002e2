"""What each inference shortcut of the fast path gives: each switched off in turn, and the code of
an earlier commit (``--before REV``, default the commit before these shortcuts) for comparison.

Variants (random weights with the official shapes; the first CoNLL-2003 eng.testa sentences;
``elmo-tasks embed``'s batch plan; type cache empty at the start of every pass):

  * all shortcuts (the default fast path);
  * char-CNN over all 50 positions (``pool_full_width``) instead of each word's own windows;
  * boundary steps computed (``skip_boundary_steps = False``);
  * first layer's input GEMM per position instead of once per distinct word;
  * the recurrent and input GEMMs by the other library: MKL's ``addmm`` where the recurrent weight is
    large enough for oneDNN's packed linear (``onednn.py``, "original"), oneDNN where it is not ("small");
  * the cell's pointwise math by PyTorch's eager ops instead of the one-pass kernel (``fused_cell.py``;
    the same bits, so only the time can differ);
  * the code of ``--before`` (its ``elmo_core``, unpacked by ``git archive``; run in a subprocess).

Timing is the CPU time of the process on ONE thread (less disturbed by other processes than wall
time on a shared 2-core machine), median of ``--repeats`` interleaved passes. The change from the
fast path's tanh (taken as ``2 sigmoid(2x) - 1``) is in the ``--before`` row only, with everything else.

    python benchmarks/backbone_ablation.py [--repeats 3] [--before 9eee6be] [--no-write] [--section NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import DOCS, REPO, command_line, git_revision, machine, write_section

VARIANTS = (
    "all shortcuts",
    "char-CNN over all 50 positions",
    "char-CNN windows by one GEMM",
    "boundary steps computed",
    "sentences not packed into rows",
    "input GEMM per position",
    "recurrent and input GEMMs by the other library",
    "cell pointwise math by the eager ops",
)
SIZES = {"small": 1000, "original": 300}


def switch_off(bilm, variant: str) -> None:
    if variant == "char-CNN over all 50 positions":
        bilm.char_cnn.pool_by_length = bilm.char_cnn.pool_full_width
    elif variant == "char-CNN windows by one GEMM":
        bilm.char_cnn.window_table_pooling = False
    elif variant == "sentences not packed into rows":
        bilm.pack_sentences = False
    elif variant == "boundary steps computed":
        bilm.skip_boundary_steps = False
    elif variant == "input GEMM per position":
        run_lstm_batches = bilm.run_lstm_batches
        bilm.run_lstm_batches = lambda batches, boundary_outputs=True: run_lstm_batches(
            [batch._replace(types=None) for batch in batches], boundary_outputs
        )
    elif variant == "recurrent and input GEMMs by the other library":
        for layer in [*bilm.forward_layers, *bilm.backward_layers]:
            layer.prepacked_weights = not layer.recurrent_weight_is_large()
    elif variant == "cell pointwise math by the eager ops":
        for layer in [*bilm.forward_layers, *bilm.backward_layers]:
            layer.fused_pointwise = False


def cpu_seconds_per_pass(options: Path, weights: Path, sentences, variant: str | None, repeats: int) -> list[float]:
    from elmo_core import load_bilm
    from elmo_core.embed import embed_sentences, plan_embedding_batches

    bilm = load_bilm(options=options, weights=weights)
    if variant is not None:
        switch_off(bilm, variant)
    batches = plan_embedding_batches(sentences)
    list(embed_sentences(bilm, sentences[:16], plan_embedding_batches(sentences[:16]), progress=False))
    seconds = []
    for _ in range(repeats):
        bilm.type_cache.clear()
        started = time.process_time()
        for _ in embed_sentences(bilm, sentences, batches, progress=False):
            pass
        seconds.append(time.process_time() - started)
    return seconds


def before_pass(rev: str, folder: Path, options: Path, weights: Path, text: Path) -> float:
    """One pass of ``rev``'s code in a subprocess whose ``elmo_core`` is that commit's."""
    code = folder / f"code-{rev}"
    if not code.is_dir():
        code.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", rev, "elmo_core", "data"], cwd=REPO, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(code)], input=archive.stdout, check=True)
    env = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{REPO / 'benchmarks'}", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(options), str(weights), str(text)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=folder,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])[0]


def child(options: str, weights: str, text: str) -> int:
    """Runs in the subprocess: only the old commit's modules are imported."""
    import elmo_core

    assert "code-" in elmo_core.__file__, elmo_core.__file__  # the old commit's code, not ours
    torch.set_num_threads(1)
    sentences = [line.split() for line in Path(text).read_text().splitlines()]
    print(json.dumps(cpu_seconds_per_pass(Path(options), Path(weights), sentences, None, 1)))
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(*sys.argv[2:5])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", default="e02af08", help="the commit to compare with (default e02af08)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--section",
        default="backbone-ablation",
        help="the section of docs/benchmarks.md to (re)write; another name keeps the existing table",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    from backbone_speed import SHAPES, conll_dev_sentences

    from elmo_core import fused_cell  # here, not at the top: the --child process imports an older elmo_core
    from elmo_core.random_model import write_random_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, count in SIZES.items():
            options, weights = write_random_model(Path(tmp) / name, SHAPES[name], init="scaled-normal")
            sentences = conll_dev_sentences(count)
            text = Path(tmp) / f"{name}.txt"
            text.write_text("\n".join(" ".join(s) for s in sentences) + "\n")
            seconds: dict[str, list[float]] = {v: [] for v in (*VARIANTS, f"git {args.before} (before)")}
            for _ in range(args.repeats):  # interleaved: every variant once per round
                for variant in VARIANTS:
                    off = None if variant == "all shortcuts" else variant
                    seconds[variant] += cpu_seconds_per_pass(options, weights, sentences, off, 1)
                seconds[f"git {args.before} (before)"].append(
                    before_pass(args.before, Path(tmp), options, weights, text)
                )
                print(f"  {name}: round done", file=sys.stderr)
            base = statistics.median(seconds["all shortcuts"])
            for variant, values in seconds.items():
                median = statistics.median(values)
                rows.append(
                    f"| {name} | {variant} | {median:.2f} ({min(values):.2f}–{max(values):.2f}) | "
                    f"{median / base:.2f}x |"
                )
    text = (
        "### What each shortcut gives (`benchmarks/backbone_ablation.py`)\n\n"
        f"Command: `{command_line()}`; git {git_revision()}.\nMachine: {machine()}. "
        f"The one-pass cell kernel (`fused_cell.py`): {fused_cell.status()}.\n"
        f"CPU seconds of one pass on ONE thread (median and range of {args.repeats} interleaved passes; "
        f"{SIZES['small']} / {SIZES['original']} CoNLL-2003 dev sentences for small / original); each row switches one "
        "shortcut off; the last row per model is the code before them.\n\n"
        "| model | variant | CPU s per pass | vs all shortcuts |\n|---|---|---:|---:|\n" + "\n".join(rows) + "\n"
    )
    print(text)
    if not args.no_write:
        write_section(DOCS / "benchmarks.md", args.section, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
