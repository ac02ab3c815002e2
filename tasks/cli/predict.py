"""``elmo-tasks predict RUN_DIR --input FILE --output FILE``: tag or classify new text."""

from __future__ import annotations

import argparse
from pathlib import Path


def predict(run_dir: Path, input_path: Path, output: Path, input_format: str = "auto") -> tuple[int, str]:
    """Writes the task's output for ``input_path``; returns ``(examples, format read)``. Every path
    is checked before the run is loaded."""
    from elmo_core.io import check_output_file

    from ..run_dir import load_run
    from .common import check_input_exists

    check_input_exists(input_path, "--input")
    check_output_file(output, "--output")
    trained = load_run(run_dir)
    split, predictions, used = trained.predict_file(input_path, input_format)
    trained.task.write_output(split, predictions, output)
    return len(predictions), used


def run(args: argparse.Namespace) -> int:
    count, used = predict(args.run_dir, args.input, args.output, args.format)
    print(f"predicted {count} items ({used} input) -> {args.output}")
    return 0


def add_parser(verbs) -> None:
    parser = verbs.add_parser(
        "predict",
        help="tag or classify a file with a trained run",
        description="Raw text (one tokenised sentence per line) or a file in the task's labelled format. NER "
        "writes 'token tag' lines with a blank line between sentences; sentiment 'label<TAB>name<TAB>"
        "text' lines; WSD the framework's key file.",
        epilog="example: elmo-tasks predict runs/ner_conll2003-seed1 --input news.txt --output news.tags",
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument(
        "--format",
        choices=["auto", "text", "labelled", "conll"],
        default="auto",
        help="auto (default): the task's labelled format when the file has its structure, text "
        "otherwise; conll is an alias of labelled",
    )
    parser.set_defaults(run=run)
