"""How far has a long pretraining run got? Heldout perplexity against tokens seen, beside the shipped
default's curve and the target, from the runs' own log.csv files (the run may still be going).

Writes a plot (docs/pretraining_progress.png), a table (section "pretraining-progress" of
docs/pretraining.md) and a copy of each run's log (docs/pretraining_<run>_log.csv), so the curve
survives the run directory.

    python benchmarks/pretraining_progress.py runs/bilm_strong
    python benchmarks/pretraining_progress.py runs/ab-precision-fp32 runs/ab-precision-bf16 --no-copy-logs
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from common import DOCS, command_line, git_revision, machine, write_section

DEFAULT_LOG = DOCS / "pretraining_log.csv"  # the first default's run (session 2; v1, replaced in session 9)


def read_log(path: Path) -> list[dict]:
    """The rows of a pretraining log.csv (step, tokens_seen, seconds, ..., mean_ppl)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    missing = {"tokens_seen", "seconds", "mean_ppl"} - set(rows[0] if rows else {})
    if not rows or missing:
        raise SystemExit(f"{path}: expected a pretraining log.csv with rows and columns tokens_seen, seconds, mean_ppl")
    return rows


def run_summary(run: Path) -> dict:
    rows = read_log(run / "log.csv")
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
    lstm = config.get("model", {}).get("lstm", {})
    last = rows[-1]
    return {
        "name": run.name,
        "rows": rows,
        "model": f"LSTM {lstm.get('dim', '?')}/{lstm.get('projection_dim', '?')}" if lstm else "?",
        "precision": config.get("precision", "?"),
        "lr": f"{config.get('lr', '?')} {config.get('lr_schedule', 'constant')}",
        "tokens": int(last["tokens_seen"]),
        "hours": float(last["seconds"]) / 3600,
        "last_ppl": float(last["mean_ppl"]),
        "best_ppl": min(float(r["mean_ppl"]) for r in rows),
        "tokens_per_s": int(last["tokens_seen"]) / max(float(last["seconds"]), 1e-9),
        "heldout_sentences": config.get("heldout_sentences", "?"),
    }


def plot(runs: list[dict], reference: list[dict] | None, target: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    if reference:
        ax.plot(
            [int(r["tokens_seen"]) / 1e6 for r in reference],
            [float(r["mean_ppl"]) for r in reference],
            color="grey",
            ls="--",
            marker="o",
            ms=3,
            label="first default, v1 (3.0M params)",
        )
    for run in runs:
        ax.plot(
            [int(r["tokens_seen"]) / 1e6 for r in run["rows"]],
            [float(r["mean_ppl"]) for r in run["rows"]],
            marker="o",
            ms=2,
            label=f"{run['name']} ({run['model']}, {run['precision']})",
        )
    ax.axhline(target, color="red", lw=0.8, label=f"target {target:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # plain numbers, not 10^x, on the log axes
        axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel("training tokens seen (millions)")
    ax.set_ylabel("heldout perplexity (mean of directions)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="pretraining run directories (each with log.csv)")
    parser.add_argument("--target", type=float, default=100.0, help="heldout perplexity to reach")
    parser.add_argument("--doc", type=Path, default=DOCS / "pretraining.md")
    parser.add_argument("--section", default="pretraining-progress")
    parser.add_argument("--title", default="Pretraining progress", help="the section's heading")
    parser.add_argument("--plot", type=Path, default=DOCS / "pretraining_progress.png")
    parser.add_argument("--no-copy-logs", action="store_true", help="do not copy the runs' logs into docs/")
    args = parser.parse_args()
    for run in args.runs:
        if not (run / "log.csv").is_file():
            parser.error(f"{run}: no log.csv (not a pretraining run directory, or it has not evaluated yet)")
    runs = [run_summary(run) for run in args.runs]
    reference = read_log(DEFAULT_LOG) if DEFAULT_LOG.is_file() else None
    plot(runs, reference, args.target, args.plot)
    if not args.no_copy_logs:
        for run in args.runs:
            (DOCS / f"pretraining_{run.name}_log.csv").write_text((run / "log.csv").read_text())
    lines = [
        "| run | model | precision | learning rate | tokens seen | hours | tokens/s | heldout ppl, last | best |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| `{r['name']}` | {r['model']} | {r['precision']} | {r['lr']} | {r['tokens'] / 1e6:.2f}M | "
            f"{r['hours']:.2f} | {r['tokens_per_s']:,.0f} | {r['last_ppl']:.1f} | {r['best_ppl']:.1f} |"
        )
    if reference:
        last = reference[-1]
        lines.append(
            f"| first `default` (v1) | LSTM 512/128 | fp32 | 0.002 constant | {int(last['tokens_seen']) / 1e6:.2f}M | "
            f"{float(last['seconds']) / 3600:.2f} | {int(last['tokens_seen']) / float(last['seconds']):,.0f} | "
            f"{float(last['mean_ppl']):.1f} | {min(float(r['mean_ppl']) for r in reference):.1f} |"
        )
    body = (
        f"## {args.title} (`benchmarks/pretraining_progress.py`)\n\n"
        f"Command: `{command_line()}`; git {git_revision()}. Machine of this report: {machine()}.\n"
        f"Heldout perplexity as the runs log it: the mean of the two directions on the first "
        f"{', '.join(sorted({str(r['heldout_sentences']) for r in runs}))} heldout sentences, the same 50,000-word "
        f"vocabulary as the first default (v1, whose card docs/default_backbone_v1.md also gives its full-heldout figure). Hours and tokens/s are "
        f"the runs' own training clocks (they include heldout evaluations and any time the process shared the CPU).\n\n"
        + "\n".join(lines)
        + f"\n\n![heldout perplexity against tokens seen]({args.plot.name})\n"
    )
    write_section(args.doc, args.section, body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
