"""What several verbs share: the backbone arguments and how scores are printed."""

from __future__ import annotations

import argparse
from pathlib import Path

from elmo_core.errors import ElmoFileError

PRECISIONS = ["fp32", "int8", "bf16", "fp16"]


def add_backbone_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("backbone (a model name, or an options JSON + HDF5 weights)")
    group.add_argument(
        "--backbone",
        default=None,
        metavar="NAME",
        help="named model: default (shipped; default@vN insists on that release), small, medium, original, "
        "original-5.5b (downloaded)",
    )
    group.add_argument("--options", type=Path, help="options JSON in the bilm-tf layout")
    group.add_argument("--weights", type=Path, help="HDF5 weights in the bilm-tf layout")


def check_input_exists(path: Path, what: str) -> None:
    """A missing input is found before anything is loaded (what it must hold is the task's reader's business)."""
    from data.errors import DataFormatError

    if not Path(path).exists():
        raise DataFormatError(path, None, f"file not found ({what})")


def check_backbone_arguments(args: argparse.Namespace) -> None:
    if (args.options is None) != (args.weights is None):
        raise ElmoFileError("--options and --weights go together")


def backbone_from_args(args: argparse.Namespace, stateful: bool = False):
    from elmo_core import load_bilm

    check_backbone_arguments(args)
    return load_bilm(
        name=args.backbone,
        options=args.options,
        weights=args.weights,
        stateful=stateful,
        device=getattr(args, "device", "cpu"),
        precision=getattr(args, "precision", "fp32"),
    )


def format_scores(scores: dict) -> str:
    keys = [k for k in ("f1", "precision", "recall", "accuracy", "strict_f1", "macro_f1") if k in scores]
    return ", ".join(f"{k} {scores[k]:.2f}" for k in keys)


def add_strict_argument(parser: argparse.ArgumentParser, config_key: str | None = None) -> None:
    """``--strict``: counted warnings about the input (data/warnings.py) become errors."""
    also = f" (also: {config_key}: true in the config)" if config_key else ""
    parser.add_argument(
        "--strict",
        action="store_true",
        help="treat suspicious input as an error instead of a counted warning: tag transitions the "
        "file's scheme forbids, entity types never seen in training, control characters inside tokens, "
        "a TSV header found only by a guess, gold keys that are no WordNet 3.0 sense, sentences skipped "
        f"as too long{also}. The error names the first occurrence (FILE:LINE)",
    )
