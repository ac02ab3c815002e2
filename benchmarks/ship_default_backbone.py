"""Ship a finished pretraining run as the package's `default` backbone, with its model card.

Copies options.json + weights.hdf5 into elmo_core/pretrained/default/, records the release
(`default@vN`, by content hash) in elmo_core/pretrained/versions.json, draws the heldout
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


def keep_previous_card(path: Path, docs: Path) -> Path:
    """Copy the shipped default's card and curve aside (``path`` and ``<path stem>_curve.png``)."""
    card, curve = docs / "default_backbone.md", docs / "pretraining_curve.png"
    kept_curve = path.with_name(f"{path.stem}_curve.png")
    shutil.copyfile(curve, kept_curve)
    text = card.read_text().replace("](pretraining_curve.png)", f"]({kept_curve.name})")
    path.write_text(
        text.replace("# Model card: elmo-tasks `default` backbone", "# Model card: the previous `default` backbone", 1)
    )
    return path


def record_release(versions: Path, run: Path, previous_weights: Path, previous_card: Path | None) -> str:
    """Append the run's files to ``versions`` as the next release of 'default' and return its
    label (``v3``); re-shipping files already recorded returns their label and adds nothing. The
    release shipped until now gets ``previous_card`` as its card, where that card was kept."""
    from elmo_core.io import file_sha256

    record = json.loads(versions.read_text()) if versions.is_file() else {}
    releases = record.setdefault("default", [])
    if previous_card is not None and previous_weights.is_file():
        shipped = file_sha256(previous_weights)
        for release in releases:
            if release["weights_sha256"] == shipped:
                release["card"] = f"docs/{previous_card.name}"
    weights = file_sha256(run / "weights.hdf5")
    for release in releases:
        if release["weights_sha256"] == weights:
            return release["version"]
    label = f"v{len(releases) + 1}"
    releases.append(
        {
            "version": label,
            "options_sha256": file_sha256(run / "options.json"),
            "weights_sha256": weights,
            "card": "docs/default_backbone.md",
        }
    )
    versions.parent.mkdir(parents=True, exist_ok=True)
    versions.write_text(json.dumps(record, indent=1) + "\n")
    return label


def hours(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def schedule(config: dict) -> str:
    """The learning-rate schedule in words ("" when constant)."""
    kind = config.get("lr_schedule", "constant")
    if kind == "constant":
        return ""
    horizon = config.get("lr_decay_tokens") or config["max_tokens_seen"]
    return f", {kind} decay to {config['lr_final_ratio']:g}× over {horizon / 1e6:g}M tokens"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--train-command", required=True, help="the command that produced the run")
    parser.add_argument("--corpus-note", required=True, help="what the training text was")
    parser.add_argument("--full-heldout", type=json.loads, default=None, help="JSON of full-heldout perplexities")
    parser.add_argument("--schedule-note", default="", help="how the schedule was changed during the run, if it was")
    parser.add_argument("--hardware-note", default="", help="what else ran on the machine, sessions, resumes")
    parser.add_argument(
        "--previous-card",
        type=Path,
        default=None,
        help="keep the shipped default's card here (with its curve) before overwriting it, and link to it",
    )
    parser.add_argument("--target", type=Path, default=TARGET, help="where the package's default lives")
    parser.add_argument("--docs", type=Path, default=DOCS, help="where the card and the curve go")
    parser.add_argument(
        "--versions", type=Path, default=None, help="the release record (default: versions.json beside --target)"
    )
    args = parser.parse_args()
    rows = list(csv.DictReader((args.run / "log.csv").open()))
    result = json.loads((args.run / "result.json").read_text())
    config = json.loads((args.run / "config.json").read_text())
    docs, target = args.docs, args.target
    previous = keep_previous_card(args.previous_card, docs) if args.previous_card else None
    versions = args.versions or target.parent / "versions.json"
    release = record_release(versions, args.run, target / "weights.hdf5", previous)
    target.mkdir(parents=True, exist_ok=True)
    for name in ("options.json", "weights.hdf5"):
        shutil.copyfile(args.run / name, target / name)
    plot_curve(rows, docs / "pretraining_curve.png")
    size_mb = (target / "weights.hdf5").stat().st_size / 1e6
    import torch

    from elmo_core import load_bilm

    bilm = load_bilm(options=target / "options.json", weights=target / "weights.hdf5")
    params = sum(p.numel() for p in bilm.parameters())
    model = config["model"]
    speeds = [float(r["tokens_per_s"]) for r in rows]
    full = args.full_heldout or {}
    card = f"""# Model card: elmo-tasks `default` backbone (`default@{release}`)

A small ELMo biLM trained from scratch with `elmo-tasks pretrain` on a 2-core CPU,
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
| training | {result["tokens_seen"]:,} tokens seen in {hours(result["seconds"])} of training clock ({result["step"]:,} steps), sentence batches of ≤ {config["batch_tokens"]} padded tokens, Adam lr {config["lr"]}{schedule(config)}, dropout {config["dropout"]}, clip {config["clip_norm"]}, {config.get("precision", "fp32")} step{args.schedule_note and f" ({args.schedule_note})"}; {speeds[-1]:,.0f} tokens/s at the end (median {sorted(speeds)[len(speeds) // 2]:,.0f}) |
| hardware | {machine().split(", torch")[0]}, torch {torch.__version__}; {result.get("world_size", 1)} process(es) of `threads: {config["threads"]}`{args.hardware_note and f"; {args.hardware_note}"} |
| heldout perplexity | first 1,000 heldout sentences: forward {result["forward_ppl"]:.1f}, backward {result["backward_ppl"]:.1f}, mean {result["mean_ppl"]:.1f}{(f"; full heldout ({full.get('tokens', 0):,} tokens): forward {full['forward_ppl']:.1f}, backward {full['backward_ppl']:.1f}, mean {full['mean_ppl']:.1f}") if full else ""} (vocabulary of {config["max_vocab"]:,}: out-of-vocabulary words are `<UNK>`, which lowers perplexity; compare only runs with the same vocabulary) |
| command | `{args.train_command}` |
| release | `default@{release}`: logs and `results.json` name it so; `load_bilm("default@{release}")` refuses any other files (releases by content hash: `elmo_core/pretrained/{versions.name}`) |

![heldout perplexity](pretraining_curve.png)
{f"{chr(10)}The previous `default` (its card, figures and curve are kept): [{previous.name}]({previous.name}).{chr(10)}" if previous else ""}
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
    (docs / "default_backbone.md").write_text(card)
    (target / "MODEL_CARD.md").write_text(
        card.replace("](pretraining_curve.png)", "](../../../docs/pretraining_curve.png)")
    )
    print(card)
    return 0


if __name__ == "__main__":
    sys.exit(main())
