"""How far fp32 itself is from exact: our fp32 backbone against the same weights in float64.

The speed benchmark compares our fp32 layers with AllenNLP's fp32 layers (max abs difference). Both
round; this measures the rounding error of one fp32 implementation alone, on the same random
"small" and "original" shapes (scaled-normal weights, outputs of magnitude ~20) and CoNLL-2003 dev
sentences, so that a difference against AllenNLP can be read: at or below this, it is rounding.

    python benchmarks/fp32_rounding.py [--sentences 100] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from backbone_speed import SHAPES, conll_dev_sentences
from common import DOCS, command_line, git_revision, machine, write_section

from elmo_core import batch_to_ids, load_bilm
from elmo_core.random_model import write_random_model


def fp32_error(name: str, count: int) -> tuple[float, float]:
    """(max |fp32 - fp64| over every token of every layer, max |output|)."""
    with tempfile.TemporaryDirectory() as tmp:
        options, weights = write_random_model(Path(tmp) / name, SHAPES[name], init="scaled-normal")
        single = load_bilm(options=options, weights=weights)
        double = load_bilm(options=options, weights=weights).double()
        worst = largest = 0.0
        sentences = conll_dev_sentences(count)
        for start in range(0, len(sentences), 20):
            batch = sentences[start : start + 20]
            ids = batch_to_ids(batch)
            with torch.no_grad():
                a, b = single(ids).layers, double(ids).layers  # (layers, batch, time, dim)
            for row, tokens in enumerate(batch):
                x, y = a[:, row, : len(tokens)].double(), b[:, row, : len(tokens)]
                worst = max(worst, (x - y).abs().max().item())
                largest = max(largest, y.abs().max().item())
    return worst, largest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = ["| model | sentences | max abs fp32 − fp64 | max abs output |", "|---|---:|---:|---:|"]
    for name in ("small", "original"):
        worst, largest = fp32_error(name, args.sentences)
        rows.append(f"| {name} | {args.sentences} | {worst:.1e} | {largest:.1f} |")
    text = (
        "## fp32's own rounding error (`benchmarks/fp32_rounding.py`)\n\n"
        f"Command: `{command_line()}`; git {git_revision()}.\nMachine: {machine()}.\n"
        "Our fp32 backbone against the same random weights (the speed benchmark's shapes) in float64, every token of "
        "every layer of the first CoNLL-2003 dev sentences.\n\n" + "\n".join(rows) + "\n"
    )
    print(text)
    if not args.no_write:
        write_section(DOCS / "benchmarks.md", "fp32-rounding", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
