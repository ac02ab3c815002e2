"""``elmo-tasks benchmark layers``: every task x layer weighting x seed on one backbone."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_backbone_arguments, check_backbone_arguments


def benchmark_layers(
    tasks: list[str],
    seeds: int,
    backbone: dict,
    out: Path,
    reduced: bool = False,
    mixes: list[str] | None = None,
    overrides: dict | None = None,
    jobs: int = 1,
    store: Path | None | str = "default",
) -> list[dict]:
    """The grid's finished cells (see :func:`tasks.experiments.layer_grid.run_grid`)."""
    from ..experiments.layer_grid import run_grid

    return run_grid(tasks, seeds, backbone, out, reduced=reduced, mixes=mixes, extra=overrides, jobs=jobs, store=store)


def run_layers(args: argparse.Namespace) -> int:
    from data.config import parse_overrides

    check_backbone_arguments(args)
    backbone = (
        {"name": None, "options": str(args.options), "weights": str(args.weights)}
        if args.options
        else {"name": args.backbone or "default"}
    )
    out = args.out or Path("runs") / ("layers-reduced" if args.reduced else "layers")
    store = None if args.no_store else (args.store or out / "features")
    benchmark_layers(
        [t.strip() for t in args.tasks.split(",") if t.strip()],
        args.seeds,
        backbone,
        out,
        reduced=args.reduced,
        mixes=[m.strip() for m in args.mixes.split(",")] if args.mixes else None,
        overrides=parse_overrides(args.set),
        jobs=args.jobs,
        store=store,
    )
    print((out / "table.md").read_text(encoding="utf-8"))
    print(f"tables, CSV and plots in {out}")
    return 0


def add_parser(verbs) -> None:
    from ..registry import TASKS

    benchmark = verbs.add_parser("benchmark", help="benchmarks that are one command (layer weighting)")
    benchmarks = benchmark.add_subparsers(dest="benchmark", required=True, metavar="WHICH")
    layers = benchmarks.add_parser(
        "layers",
        help="every task x layer weighting x seed",
        description="Train and evaluate each task's head with each layer weighting (each layer alone, the top\n"
        "layer, the equal average, the learned ScalarMix with lambda=1 and 0.001, concatenation),\n"
        "reusing ELMo features across cells. Model selection uses dev; test is reported. Writes\n"
        "cells.csv, summary.csv, table.md, score_by_mix.png and learned_weights.png to --out.\n\n"
        "Every cell's config is checked before the first one starts. Finished cells are not run\n"
        "again, so a killed grid resumes where it stopped. What the grids cost on 2 CPU cores is\n"
        "in docs/layer_weighting.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  elmo-tasks benchmark layers --seeds 3 --reduced --jobs 2          # the quick grid, 5 tasks\n"
        "  elmo-tasks benchmark layers --tasks ner,pos --mixes layer1,concat  # a slice of the full grid\n"
        "  elmo-tasks benchmark layers --options O.json --weights W.hdf5      # your own backbone",
    )
    layers.add_argument("--tasks", default="ner,pos,chunk,sst5,wsd", help=f"comma-separated: {','.join(TASKS)}")
    layers.add_argument(
        "--seeds", type=int, default=3, help="seeds 1..N per cell (mean ± std in the tables). Default 3"
    )
    layers.add_argument("--mixes", help="comma-separated subset of the mixes (default: all of them)")
    layers.add_argument(
        "--reduced",
        action="store_true",
        help="the quick grid (subsets, fewer epochs: each task's `reduced` settings; see docs/layer_weighting.md)",
    )
    layers.add_argument("--out", type=Path, help="output directory (default runs/layers[-reduced])")
    layers.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override for every cell")
    layers.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="cells trained at once, in worker processes of one thread each (e.g. 2 on a "
        "2-core machine); features are still computed once. Default 1",
    )
    stored = layers.add_mutually_exclusive_group()
    stored.add_argument(
        "--store",
        type=Path,
        metavar="DIR",
        help="feature store the cells read; the first invocation fills it, later ones (and "
        "resumed grids) skip the backbone. Default OUT/features",
    )
    stored.add_argument(
        "--no-store", action="store_true", help="keep the features in memory only (computed again by every invocation)"
    )
    add_backbone_arguments(layers)
    layers.set_defaults(run=run_layers)
