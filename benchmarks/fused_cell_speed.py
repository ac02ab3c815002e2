"""What the one-pass LSTM cell kernel (``elmo_core/fused_cell.py``) gives: the LSTM stacks' time with
the kernel and with PyTorch's eager ops, and a check that the two give the same bits.

Random weights with the official "small" and "original" shapes, and the shipped ``default`` biLM
(what the main job embeds with); the first CoNLL-2003 eng.testa sentences in ``elmo-tasks embed``'s batch plan. Each batch's token vectors are made once; then
``bilm.run_lstms`` runs on the batch with the eager ops and with the kernel, in alternating order,
batch after batch, for ``--repeats`` rounds. A 5-10 % effect is smaller than this shared machine's
drift between whole passes (the ablation benchmark interleaves passes, minutes apart), so the
comparison is interleaved at the level of one batch (seconds apart). Time: CPU seconds of the
process with one thread (what the kernel saves), wall seconds with two (the two directions side by
side, one core each: what a user sees). The outputs of every batch are compared bit for bit.

    python benchmarks/fused_cell_speed.py [--repeats 5] [--no-write] [--section NAME]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from backbone_speed import SHAPES, conll_dev_sentences
from common import DOCS, command_line, git_revision, machine, write_section

from elmo_core import fused_cell, load_bilm
from elmo_core.bilm import add_sentence_boundaries
from elmo_core.char_ids import batch_to_ids
from elmo_core.embed import plan_embedding_batches
from elmo_core.random_model import write_random_model

SIZES = {"small": 1000, "original": 300, "default": 1000}


def set_fused(bilm, wanted: bool | None) -> None:
    for layer in [*bilm.forward_layers, *bilm.backward_layers]:
        layer.fused_pointwise = wanted


def lstm_seconds(bilm, prepared, threads: int, repeats: int) -> tuple[dict[str, list[float]], bool]:
    """Per round, the LSTM stacks' seconds over all batches, eager and fused; and whether every
    output had the same bits both ways."""
    clock = time.process_time if threads == 1 else time.perf_counter
    seconds: dict[str, list[float]] = {"eager": [], "fused": []}
    same = True
    torch.set_num_threads(threads)
    with torch.no_grad():
        for round_ in range(repeats):
            spent = {"eager": 0.0, "fused": 0.0}
            for k, (types, lengths) in enumerate(prepared):
                outputs = {}
                for variant in ("eager", "fused") if (round_ + k) % 2 == 0 else ("fused", "eager"):
                    set_fused(bilm, False if variant == "eager" else None)
                    started = clock()
                    outputs[variant] = bilm.run_lstms(types.embeddings(), lengths + 2, False, types)
                    spent[variant] += clock() - started
                same &= all(torch.equal(a, b) for a, b in zip(outputs["eager"], outputs["fused"]))
            for variant, value in spent.items():
                seconds[variant].append(value)
    set_fused(bilm, None)
    return seconds, same


def prepare(bilm, sentences, batches):
    prepared = []
    with torch.no_grad():
        for batch in batches:
            ids = batch_to_ids([sentences[i] for i in batch])
            lengths = (ids[:, :, 0] > 0).sum(1)
            prepared.append((bilm.token_types(add_sentence_boundaries(ids, lengths, ids.shape[2])), lengths))
    return prepared


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="rounds over all batches (default 5)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--section", default="fused-cell-speed", help="the section of docs/benchmarks.md to (re)write")
    args = parser.parse_args()
    status = fused_cell.status()
    if fused_cell.kernel() is None:
        sys.exit(f"the fused LSTM cell kernel is {status}: nothing to compare")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, count in SIZES.items():
            if name == "default":
                bilm = load_bilm("default")
            else:
                options, weights = write_random_model(Path(tmp) / name, SHAPES[name], init="scaled-normal")
                bilm = load_bilm(options=options, weights=weights)
            sentences = conll_dev_sentences(count)
            batches = plan_embedding_batches(sentences)
            prepared = prepare(bilm, sentences, batches)
            for threads in (1, 2):
                seconds, same = lstm_seconds(bilm, prepared, threads, args.repeats)
                eager, fused = (statistics.median(seconds[v]) for v in ("eager", "fused"))
                paired = [f / e for f, e in zip(seconds["fused"], seconds["eager"])]
                rows.append(
                    f"| {name} | {threads} ({'CPU' if threads == 1 else 'wall'} s) | {eager:.2f} "
                    f"({min(seconds['eager']):.2f}–{max(seconds['eager']):.2f}) | {fused:.2f} "
                    f"({min(seconds['fused']):.2f}–{max(seconds['fused']):.2f}) | **{fused / eager:.3f}** "
                    f"({min(paired):.3f}–{max(paired):.3f}) | {'yes' if same else '**no**'} |"
                )
                print(rows[-1], file=sys.stderr)
    torch.set_num_threads(2)
    text = (
        "## The LSTM cell's one-pass kernel (`benchmarks/fused_cell_speed.py`)\n\n"
        f"Command: `{command_line()}`; git {git_revision()}.\nMachine: {machine()}. Kernel: {status}.\n"
        f"The LSTM stacks' seconds over the first {SIZES['small']} (small, default) / {SIZES['original']} "
        "(original) CoNLL-2003 dev sentences in `elmo-tasks embed`'s batch plan, the pointwise math by PyTorch's eager ops "
        f"and by the kernel, alternating batch by batch; medians (min–max) of {args.repeats} rounds; the ratio is "
        "of the medians, with the range of the rounds' ratios. One thread: CPU time; two threads (the two "
        "directions side by side): wall time.\n\n"
        "| model | threads | eager ops s | kernel s | kernel / eager | same bits |\n"
        "|---|---|---:|---:|---:|---|\n" + "\n".join(rows) + "\n"
    )
    print(text)
    if not args.no_write:
        write_section(DOCS / "benchmarks.md", args.section, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
