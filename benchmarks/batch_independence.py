"""How much a sentence's vectors depend on the batch it is embedded in, on the shipped backbone.

The default (stateless) biLM computes every sentence from a zero state, so its vectors should not
depend on its batch mates or padding; floating point can still differ, because a GEMM over more or
fewer rows may sum in another order and the char-CNN groups words differently. This script embeds
CoNLL-2003 dev sentences three ways, each with a fresh biLM (empty type cache):

  * planned: ``elmo-tasks embed``'s batch plan (length-sorted batches of <= 256 sentences);
  * alone: one sentence per batch;
  * shuffled: random batches of 64 in random order, padded to the longest.

It reports the max abs difference per layer against the planned vectors, and the largest |value|.

    python benchmarks/batch_independence.py [--sentences 1000] [--backbone default] [--threads 2]
"""

from __future__ import annotations

import argparse
import random
import sys

import numpy as np
import torch
from backbone_speed import conll_dev_sentences
from common import DOCS, command_line, git_revision, machine, write_section

from elmo_core import load_bilm
from elmo_core.embed import embed_sentences, in_order_batches, plan_embedding_batches
from elmo_core.models import labelled_name


def embed(backbone: str, sentences: list[list[str]], batches: list[list[int]]) -> dict[int, np.ndarray]:
    bilm = load_bilm(name=backbone)  # fresh: the type cache starts empty
    return dict(embed_sentences(bilm, sentences, batches, progress=False))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--backbone", default="default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--section", default="batch-independence", help="the docs/store.md section to (re)write")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sentences = conll_dev_sentences(args.sentences)
    order = list(range(len(sentences)))
    random.Random(0).shuffle(order)
    shuffled = [order[i : i + 64] for i in range(0, len(order), 64)]
    planned = embed(args.backbone, sentences, plan_embedding_batches(sentences))
    ways = {
        "alone (batches of 1)": embed(args.backbone, sentences, in_order_batches(len(sentences), 1)),
        "shuffled batches of 64": embed(args.backbone, sentences, shuffled),
    }
    layers = next(iter(planned.values())).shape[0]
    magnitude = max(float(np.abs(a).max()) for a in planned.values())
    rows = []
    for name, vectors in ways.items():
        diffs = [max(float(np.abs(planned[i][k] - vectors[i][k]).max()) for i in planned) for k in range(layers)]
        identical = sum(np.array_equal(planned[i], vectors[i]) for i in planned)
        rows.append(f"| {name} | " + " | ".join(f"{d:.1e}" for d in diffs) + f" | {identical} of {len(planned)} |")
    header = " | ".join(f"layer {k}" for k in range(layers))
    text = (
        "## Batch independence on the shipped backbone (`benchmarks/batch_independence.py`)\n\n"
        f"Command: `{command_line()}`; git {git_revision()}.\nMachine: {machine()}.\n"
        f"Backbone `{labelled_name(args.backbone)}`, the first {len(sentences)} sentences of CoNLL-2003 eng.testa; max abs difference "
        f"against `elmo-tasks embed`'s batch plan, per layer (largest |value|: {magnitude:.2f}); each way with a "
        "fresh biLM (empty type cache).\n\n"
        f"| batches | {header} | sentences bit-identical |\n|---|"
        + "---:|" * layers
        + "---:|\n"
        + "\n".join(rows)
        + "\n"
    )
    print(text)
    if not args.no_write:
        write_section(DOCS / "store.md", args.section, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
