"""``elmo-tasks evaluate RUN_DIR --data FILE``: score a trained run on a labelled file."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import PRECISIONS, add_strict_argument, format_scores


def evaluate(
    run_dir: Path, data: Path, output: Path | None = None, precision: str = "fp32", strict: bool = False
) -> dict:
    """Scores of the run's best checkpoint on ``data`` (the task's labelled format), with ``report``.
    Every path is checked before the run is loaded. ``strict``: suspicious data (data/warnings.py)
    is an error instead of a counted warning."""
    from data.warnings import collecting

    with collecting(strict=strict):
        return _evaluate(run_dir, data, output, precision)


def _evaluate(run_dir: Path, data: Path, output: Path | None, precision: str) -> dict:
    from elmo_core.io import check_output_file

    from ..run_dir import load_run
    from .common import check_input_exists

    check_input_exists(data, "--data")
    if output is not None:
        check_output_file(output, "--output")
    trained = load_run(run_dir, precision=precision)
    split, predictions, scores = trained.evaluate_file(data)
    if output is not None:
        trained.task.write_predictions(split, predictions, output)
    return scores


def run(args: argparse.Namespace) -> int:
    scores = evaluate(args.run_dir, args.data, args.output, args.precision, strict=args.strict)
    print(scores.pop("report"))
    print(format_scores(scores))
    if args.output:
        print(f"predictions: {args.output}")
    return 0


def add_parser(verbs) -> None:
    parser = verbs.add_parser(
        "evaluate",
        help="score a trained run on a labelled file",
        description="Score a run's best checkpoint on a labelled file in the task's format "
        "(CoNLL for NER and the probes, scored like conlleval; SST trees or TSV; "
        "the WSD framework's XML + gold keys).",
        epilog="example: elmo-tasks evaluate runs/ner_conll2003-seed1 --data eng.testb",
    )
    parser.add_argument(
        "run_dir", type=Path, help="a run directory, or a model package written by 'elmo-tasks package'"
    )
    parser.add_argument("--data", type=Path, required=True, help="labelled file in the task's format")
    parser.add_argument("--output", type=Path, help="also write the predictions beside the gold labels")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="backbone numerics for this evaluation (e.g. int8 to measure its cost)",
    )
    add_strict_argument(parser)
    parser.set_defaults(run=run)
