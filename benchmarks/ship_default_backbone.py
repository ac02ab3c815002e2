"""Ship a finished pretraining run as the package's `default` backbone, with its model card.

Copies options.json + weights.hdf5 into elmo_core/pretrained/default/, draws the heldout
perplexity curve (docs/pretraining_curve.png) and writes the model card (docs/default_backbone.md,
also copied beside the weights).

    python benchmarks/ship_default_backbone.py runs/bilm_default --corpus-note "..."
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

from common import DOCS, REPO, machine

TARGET = REPO / "elmo_core" / "pretrained" / "default"


def plot_curve(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tokens = [int(r["tokens_seen"]) / 1e6 for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for key, label in (("forward_ppl", "forward"), ("backward_ppl", "backward"), ("mean_ppl", "mean")):
        ax.plot(tokens, [float(r[key]) for r in rows], marker="o", ms=3, label=label)
    ax.set_xlabel("training tokens seen (millions)")
    ax.set_ylabel("heldout perplexity")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("default backbone: heldout perplexity\n(first 1,000 heldout sentences)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--train-command", required=True, help="the command that produced the run")
    parser.add_argument("--corpus-note", required=True, help="what the training text was")
    parser.add_argument("--full-heldout", type=json.loads, default=None, help="JSON of full-heldout perplexities")
    args = parser.parse_args()
    rows = list(csv.DictReader((args.run / "log.csv").open()))
    result = json.loads((args.run / "result.json").read_text())
    config = json.loads((args.run / "config.json").read_text())
    TARGET.mkdir(parents=True, exist_ok=True)
    for name in ("options.json", "weights.hdf5"):
        shutil.copyfile(args.run / name, TARGET / name)
    plot_curve(rows, DOCS / "pretraining_curve.png")
    size_mb = (TARGET / "weights.hdf5").stat().st_size / 1e6
    import torch

    from elmo_core import load_bilm

    bilm = load_bilm("default")
    params = sum(p.numel() for p in bilm.parameters())
    model = config["model"]
    speeds = [float(r["tokens_per_s"]) for r in rows]
    full = args.full_heldout or {}
    card = f"""# Model card: elmo-tasks `default` backbone

A small ELMo biLM trained from scratch with `elmo-tasks pretrain` on a 2-core CPU in one session,
shipped inside the package so the toolkit works offline. It is **not** a substitute for the
official ELMo models (trained on 1B–5.5B tokens); use `--backbone original` or your own files
for strong results.

| | |
|---|---|
| architecture | char-CNN {model["char_cnn"]["filters"]} (char dim {model["char_cnn"]["embedding"]["dim"]}, {model["char_cnn"]["n_highway"]} highway, {model["char_cnn"]["activation"]}) → projection {model["lstm"]["projection_dim"]} → 2 × {model["lstm"]["n_layers"]}-layer LSTM, cell {model["lstm"]["dim"]}, projection {model["lstm"]["projection_dim"]}, clip {model["lstm"].get("cell_clip")}/{model["lstm"].get("proj_clip")}, skip connections |
| output | {bilm.num_layers} layers × {bilm.output_dim} dims |
| parameters | {params / 1e6:.2f} M (biLM only; the softmax is not shipped), weights file {size_mb:.1f} MB |
| vocabulary (softmax only) | {config["max_vocab"]:,} words max, min count {config["min_count"]}, counted on the first {config["vocab_sample_sentences"]:,} sentences; adaptive softmax cut-offs {config["cutoffs"]} |
| training text | {args.corpus_note} |
| training | {result["tokens_seen"]:,} tokens seen in {result["seconds"] / 60:.1f} min ({result["step"]:,} steps), sentence batches of ≤ {config["batch_tokens"]} padded tokens, Adam lr {config["lr"]}, dropout {config["dropout"]}, clip {config["clip_norm"]}; {speeds[-1]:.0f} tokens/s at the end (median {sorted(speeds)[len(speeds) // 2]:.0f}) |
| hardware | {machine().split(", torch")[0]}, torch {torch.__version__}; trained with `threads: {config["threads"]}` while other jobs shared the machine |
| heldout perplexity | first 1,000 heldout sentences: forward {result["forward_ppl"]:.1f}, backward {result["backward_ppl"]:.1f}, mean {result["mean_ppl"]:.1f}{(f"; full heldout ({full.get('tokens', 0):,} tokens): forward {full['forward_ppl']:.1f}, backward {full['backward_ppl']:.1f}, mean {full['mean_ppl']:.1f}") if full else ""} (vocabulary of {config["max_vocab"]:,}: out-of-vocabulary words are `<UNK>`, which lowers perplexity; compare only runs with the same vocabulary) |
| command | `{args.train_command}` |

![heldout perplexity](pretraining_curve.png)

## Licence notes on the training text
The weights are derived from text with research-only terms: Reuters-21578 and IMDB reviews
(research use), CoNLL-2003's Reuters RCV1 text (research use only, Reuters Corpus agreement),
Brown (redistribution permitted), ABC, State of the Union, inaugural and webtext as distributed
in nltk_data. Use the model for research only. The code is Apache-2.0.

## Decontamination
The pretraining corpus excludes every sentence of the CoNLL-2003 splits, the SST sentences and
the WSD evaluation sets (see ../shared/data/corpus/STATS.md). The only benchmark text added back
is the *unlabelled* token text of CoNLL-2003 eng.train (no tags, no dev/test), which the
pretraining issue allows; so NER dev/test text was never seen, while SemCor's Brown text (WSD
training data) is part of the corpus.
"""
    (DOCS / "default_backbone.md").write_text(card)
    (TARGET / "MODEL_CARD.md").write_text(
        card.replace("](pretraining_curve.png)", "](../../../docs/pretraining_curve.png)")
    )
    print(card)
    return 0


if __name__ == "__main__":
    sys.exit(main())
