"""Seconds per NER training epoch with the feature store against running the backbone every batch.

Same config, same sentences, one process: (a) `backbone.cache: false` runs the frozen biLM on every
training batch (what toolkits without a cache do); (b) features come from the on-disk store
(built once; its build time is reported separately). Dev scoring is excluded from the epoch time.

    python benchmarks/ner_epoch_time.py [--sentences 3000] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import DOCS, REPO, command_line, git_revision, machine, write_section


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "ner_conll2003.yaml")
    parser.add_argument("--sentences", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from tasks.registry import load_task_config
    from tasks.trainer import Trainer

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, overrides in (
            ("backbone every batch (no cache)", {"backbone.cache": False}),
            ("feature store (memory-mapped)", {"backbone.store": f"{tmp}/store"}),
        ):
            config = load_task_config(
                args.config,
                {
                    "train.epochs": 1,
                    "train.threads": args.threads,
                    "data.limit": {"train": args.sentences, "dev": 200, "test": 200},
                    **overrides,
                },
            )
            result = Trainer(config, Path(tmp) / label[:8].replace(" ", "_"), progress=False, log=lambda *_: None).run()
            rows[label] = result
    lines = ["| training reads ELMo from | seconds / epoch | one-off feature time (all splits) |", "|---|---:|---:|"]
    for label, result in rows.items():
        lines.append(
            f"| {label} | {result['seconds_per_epoch']:.1f} | {sum(result.get('features_seconds', {}).values()):.1f} s |"
        )
    slow, fast = (r["seconds_per_epoch"] for r in rows.values())
    text = (
        f"## NER epoch time with and without the feature store (`benchmarks/ner_epoch_time.py`)\n\n"
        f"Command: `{command_line()}`; git {git_revision()}. Machine: {machine()}.\n"
        f"Config `{args.config.name}` (default backbone), first {args.sentences} training sentences, one epoch.\n\n"
        + "\n".join(lines)
        + f"\n\nThe store makes an epoch **{slow / fast:.1f}x** faster; its one-off build is paid once per "
        f"dataset and backbone, not per epoch or per run.\n"
    )
    print(text)
    if not args.no_write:
        write_section(DOCS / "benchmarks.md", "ner-epoch-time", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
