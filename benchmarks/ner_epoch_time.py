"""Seconds per NER training epoch with the feature store against running the backbone every batch.

Same config, same sentences, one process: (a) `backbone.cache: false` runs the frozen biLM on every
training batch (what toolkits without a cache do); (b) features come from the on-disk store
(built once, by the first store run; its build time is reported separately). Dev scoring is
excluded from the epoch time. ``--repeats N`` trains each variant N times, interleaved (a, b, a,
b, ...), and reports the median epoch time with its range.

    python benchmarks/ner_epoch_time.py [--sentences 3000] [--threads 1] [--repeats 1] [--section NAME]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from common import DOCS, REPO, command_line, git_revision, machine, write_section

VARIANTS = ("backbone every batch (no cache)", "feature store (memory-mapped)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "ner_conll2003.yaml")
    parser.add_argument("--sentences", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--repeats", type=int, default=1, help="interleaved runs of each variant; the median is reported"
    )
    parser.add_argument("--section", default="ner-epoch-time", help="the docs/benchmarks.md section to (re)write")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from tasks.features import backbone_identity
    from tasks.registry import load_task_config
    from tasks.trainer import Trainer

    epochs: dict[str, list[float]] = {label: [] for label in VARIANTS}
    features: dict[str, float] = {}
    backbone = None
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for label, overrides in zip(VARIANTS, ({"backbone.cache": False}, {"backbone.store": f"{tmp}/store"})):
                config = load_task_config(
                    args.config,
                    {
                        "train.epochs": 1,
                        "train.threads": args.threads,
                        "data.limit": {"train": args.sentences, "dev": 200, "test": 200},
                        **overrides,
                    },
                )
                backbone = backbone_identity(config.backbone)
                out = Path(tmp) / f"{label[:8].replace(' ', '_')}-{repeat}"
                result = Trainer(config, out, progress=False, log=lambda *_: None).run()
                epochs[label].append(result["seconds_per_epoch"])
                if repeat == 0:  # the store's one-off build: the first store run pays it
                    features[label] = sum(result.get("features_seconds", {}).values())
    lines = ["| training reads ELMo from | seconds / epoch | one-off feature time (all splits) |", "|---|---:|---:|"]
    for label, values in epochs.items():
        spread = f" ({min(values):.1f}–{max(values):.1f})" if len(values) > 1 else ""
        lines.append(f"| {label} | {statistics.median(values):.1f}{spread} | {features[label]:.1f} s |")
    slow, fast = (statistics.median(v) for v in epochs.values())
    runs = f"median of {args.repeats} interleaved runs each" if args.repeats > 1 else "one run each"
    text = (
        f"## NER epoch time with and without the feature store (`benchmarks/ner_epoch_time.py`)\n\n"
        f"Command: `{command_line()}`; git {git_revision()}. Machine: {machine()}.\n"
        f"Config `{args.config.name}` ({backbone}), first {args.sentences} training sentences, one epoch; {runs}.\n\n"
        + "\n".join(lines)
        + f"\n\nThe store makes an epoch **{slow / fast:.1f}x** faster; its one-off build is paid once per "
        f"dataset and backbone, not per epoch or per run.\n"
    )
    print(text)
    if not args.no_write:
        write_section(DOCS / "benchmarks.md", args.section, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
