"""How far fp32 itself is from exact: each fp32 backbone against the same weights in float64.

The speed benchmark compares our fp32 layers with AllenNLP's fp32 layers (max abs difference). Both
round; this measures the rounding error of each fp32 implementation alone, on the same random
"small" and "original" shapes (scaled-normal weights, outputs of magnitude ~20) and CoNLL-2003 dev
sentences: our fp32 and AllenNLP 2.10.1's fp32 (its harness in ../shared/anchors/allennlp, run once,
states reset per batch; the column is skipped with a reason when the harness is not set up), each
against our model in float64, which computes the same function (tanh and all) to ~1e-15. A
difference between the two fp32 implementations at or below their own distances from float64 is
rounding.

    python benchmarks/fp32_rounding.py [--sentences 100] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from backbone_speed import SHAPES, allennlp_layers, allennlp_pass, conll_dev_sentences, harness_missing
from common import DOCS, command_line, git_revision, machine, write_section

from elmo_core import batch_to_ids, load_bilm
from elmo_core.random_model import write_random_model


def fp32_errors(name: str, count: int, threads: int, aln_missing: str | None) -> dict[str, float]:
    """Max abs over every token of every layer: ``ours`` (our fp32 - float64), ``allennlp``
    (AllenNLP's fp32 - float64; absent when its harness is missing), ``ours_vs_allennlp``, and
    ``output`` (max |float64 output|)."""
    with tempfile.TemporaryDirectory() as tmp:
        options, weights = write_random_model(Path(tmp) / name, SHAPES[name], init="scaled-normal")
        single = load_bilm(options=options, weights=weights)
        double = load_bilm(options=options, weights=weights).double()
        sentences = conll_dev_sentences(count)
        ours, exact = {}, {}
        for start in range(0, len(sentences), 20):
            batch = sentences[start : start + 20]
            ids = batch_to_ids(batch)
            with torch.no_grad():
                a, b = single(ids).layers, double(ids).layers  # (layers, batch, time, dim)
            for row, tokens in enumerate(batch):
                ours[start + row] = a[:, row, : len(tokens)].double().numpy()
                exact[start + row] = b[:, row, : len(tokens)].numpy()
        errors = {
            "ours": max(float(np.abs(ours[k] - exact[k]).max()) for k in exact),
            "output": max(float(np.abs(exact[k]).max()) for k in exact),
        }
        if aln_missing is None:
            text = Path(tmp) / "sentences.txt"
            text.write_text("\n".join(" ".join(s) for s in sentences) + "\n")
            allennlp_pass(options, weights, text, threads, Path(tmp), dump=True)
            theirs = allennlp_layers(Path(tmp) / "allennlp.npz", sentences)
            errors["allennlp"] = max(float(np.abs(theirs[k] - exact[k]).max()) for k in theirs)
            errors["ours_vs_allennlp"] = max(float(np.abs(theirs[k] - ours[k]).max()) for k in theirs)
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    missing = harness_missing()
    rows = [
        "| model | sentences | ours fp32 − fp64 | AllenNLP fp32 − fp64 | ours fp32 − AllenNLP fp32 | max abs output "
        "| one fp32 ulp there |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("small", "original"):
        e = fp32_errors(name, args.sentences, args.threads, missing)
        aln = f"{e['allennlp']:.1e}" if missing is None else "–"
        both = f"{e['ours_vs_allennlp']:.1e}" if missing is None else "–"
        ulp = float(np.spacing(np.float32(e["output"])))
        rows.append(f"| {name} | {args.sentences} | {e['ours']:.1e} | {aln} | {both} | {e['output']:.1f} | {ulp:.1e} |")
    skipped = "" if missing is None else f"\nAllenNLP columns skipped: {missing}.\n"
    text = (
        "## fp32's own rounding error (`benchmarks/fp32_rounding.py`)\n\n"
        f"Command: `{command_line()}`; git {git_revision()}.\nMachine: {machine()}.\n"
        "Each fp32 backbone against the same random weights (the speed benchmark's shapes) computed by our model in "
        "float64; max abs difference over every token of every layer of the first CoNLL-2003 dev sentences. AllenNLP "
        "2.10.1 runs in its own venv (batches of 64, sorted by length, states reset per batch).\n"
        + skipped
        + "\n"
        + "\n".join(rows)
        + "\n"
    )
    print(text)
    if not args.no_write:
        write_section(DOCS / "benchmarks.md", "fp32-rounding", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
