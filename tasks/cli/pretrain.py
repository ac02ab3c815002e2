"""``elmo-tasks pretrain``: train your own biLM on a tokenised corpus and export the official files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def pretrain(
    config_path: Path,
    train: Path,
    heldout: Path,
    out: Path,
    overrides: dict | None = None,
    progress: bool = True,
    evaluate_only: bool = False,
    wait: bool | None = None,
) -> dict:
    """Pretrain (resuming from ``out``) and export; with ``evaluate_only``, the checkpoint's heldout
    perplexity. ``wait``: another process pretraining in ``out`` is waited for (``True``), refused
    at once naming its PID (``False``), or waited for unless ``ELMO_TASKS_NO_WAIT=1`` (``None``)."""
    from elmo_core.pretrain import Pretrainer, load_pretrain_config

    config = load_pretrain_config(config_path, overrides)
    trainer = Pretrainer(config, train, heldout, out, progress=progress, wait=wait)
    return trainer.evaluate_full_heldout() if evaluate_only else trainer.run()


def run(args: argparse.Namespace) -> int:
    from data.config import parse_overrides

    result = pretrain(
        args.config,
        args.train,
        args.heldout,
        args.out,
        parse_overrides(args.set),
        progress=not args.quiet,
        evaluate_only=args.evaluate_only,
        wait=False if args.no_wait else None,
    )
    if args.evaluate_only:
        print(json.dumps(result))
        return 0
    print(
        f"heldout perplexity: forward {result['forward_ppl']:.2f}, backward {result['backward_ppl']:.2f}, "
        f"mean {result['mean_ppl']:.2f} after {result['tokens_seen']:,} tokens ({result['seconds'] / 60:.1f} min)"
    )
    print(f"exported {args.out / 'options.json'} and {args.out / 'weights.hdf5'}")
    return 0


def add_parser(verbs) -> None:
    parser = verbs.add_parser(
        "pretrain",
        help="pretrain a biLM on a tokenised corpus and export it",
        description="Train forward and backward LSTM language models over a character CNN (the architecture "
        "elmo_core loads) and export options.json + weights.hdf5 in the official layout. The whole "
        "config is checked first. Re-running the same command in the same --out resumes from the "
        "last checkpoint; budgets (max_tokens_seen, max_minutes) may be raised on resume.",
        epilog="example: elmo-tasks pretrain --config configs/bilm_default.yaml "
        "--train ../shared/data/corpus/train.txt.xz --heldout ../shared/data/corpus/heldout.txt.xz "
        "--out runs/bilm",
    )
    parser.add_argument("--config", type=Path, required=True, help="YAML config (see configs/bilm_*.yaml)")
    parser.add_argument(
        "--train", type=Path, required=True, help="corpus: one tokenised sentence per line (.xz/.gz ok)"
    )
    parser.add_argument("--heldout", type=Path, required=True, help="heldout corpus, same format")
    parser.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, log, exported model)")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a dotted config key, e.g. lr=0.001 or model.lstm.dim=256 (repeatable)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="when another process is pretraining in --out, fail at once naming its PID instead of "
        "waiting for it (also: ELMO_TASKS_NO_WAIT=1)",
    )
    parser.add_argument(
        "--evaluate-only",
        action="store_true",
        help="print the checkpoint's perplexity on the whole heldout file (JSON) and stop",
    )
    parser.set_defaults(run=run)
