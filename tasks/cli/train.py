"""``elmo-tasks train CONFIG.yaml``: train a task head from a YAML config; re-running resumes."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_strict_argument, format_scores


def train(
    config_path: Path,
    overrides: dict | None = None,
    out: Path | None = None,
    progress: bool = True,
    log=print,
    wait: bool | None = None,
    strict: bool = False,
) -> tuple[dict, Path]:
    """Check the config (all of it, before any data is read), train, and return ``(results, run directory)``.
    ``wait``: another process training in ``out`` is waited for (``True``), refused at once naming
    its PID (``False``), or waited for unless ``ELMO_TASKS_NO_WAIT=1`` (``None``). ``strict``: as
    ``data.strict: true``, suspicious data is an error instead of a counted warning."""
    from ..registry import load_task_config
    from ..trainer import Trainer

    if strict:
        overrides = {**(overrides or {}), "data.strict": True}
    config = load_task_config(config_path, overrides)
    out = out or Path("runs") / f"{Path(config_path).stem}-seed{config.train.seed}"
    return Trainer(config, out, progress=progress, log=log, wait=wait).run(), out


def run(args: argparse.Namespace) -> int:
    from data.config import parse_overrides

    results, out = train(
        args.config,
        parse_overrides(args.set),
        args.out,
        progress=not args.quiet,
        wait=False if args.no_wait else None,
        strict=args.strict,
    )
    for split in ("dev", "test"):
        if split in results:
            print(f"{split}: {format_scores(results[split])}")
    print(f"run directory: {out}")
    return 0


def add_parser(verbs) -> None:
    parser = verbs.add_parser(
        "train",
        help="train a task model from a YAML config",
        description="Train a task head on the frozen backbone. The whole config is checked first (unknown keys, "
        "types, ranges). The run directory receives the resolved config (with the sha256 of the backbone's "
        "files, which predict, evaluate and resuming check), vocabularies, per-epoch "
        "metrics (metrics.csv/json), best.pt (best dev score) and last.pt, dev/test predictions and "
        "reports. Running the same command again resumes; train.epochs and train.patience may be "
        "raised on resume, nothing that changes the model may.",
        epilog="example: elmo-tasks train configs/ner_conll2003.yaml --set train.seed=2 --out runs/ner-s2",
    )
    parser.add_argument("config", type=Path, help="YAML config (see configs/)")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a dotted config key, e.g. model.hidden=200 or data.limit=500 (repeatable)",
    )
    parser.add_argument("--out", type=Path, help="run directory (default runs/<config>-seed<seed>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_strict_argument(parser, "data.strict")
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="when another process is training in --out (or building its feature store), fail at once "
        "naming its PID instead of waiting for it (also: ELMO_TASKS_NO_WAIT=1)",
    )
    parser.set_defaults(run=run)
