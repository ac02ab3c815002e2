"""``elmo-tasks predict RUN_DIR --input FILE --output FILE``: tag or classify new text."""

from __future__ import annotations

import argparse
from pathlib import Path

from data.tokenize import MAX_SENTENCE_TOKENS

from .common import PRECISIONS, add_strict_argument

FORMATS = ["auto", "text", "tokenized", "conll", "labelled"]


def is_jsonl(path: Path) -> bool:
    return Path(path).suffix.lower() == ".jsonl"


def predict(
    run_dir: Path,
    input_path: Path,
    output: Path,
    input_format: str = "auto",
    strict: bool = False,
    precision: str = "fp32",
) -> tuple[int, str]:
    """Writes the task's output for ``input_path`` (JSON lines when ``output`` ends in ``.jsonl``);
    returns ``(examples, format read)``. Every path is checked before the run is loaded.
    ``strict``: suspicious input (data/warnings.py) is an error instead of a counted warning.
    ``precision``: the backbone's numerics (``elmo_core.loading.load_bilm``)."""
    from data.warnings import collecting

    with collecting(strict=strict):
        return _predict(run_dir, input_path, output, input_format, precision)


def _predict(run_dir: Path, input_path: Path, output: Path, input_format: str, precision: str) -> tuple[int, str]:
    from elmo_core.io import check_output_file

    from ..records import write_jsonl
    from ..run_dir import load_run
    from .common import check_input_exists

    check_input_exists(input_path, "--input")
    check_output_file(output, "--output")
    trained = load_run(run_dir, precision=precision)
    split, predictions, used = trained.predict_file(input_path, input_format)
    if is_jsonl(output):
        write_jsonl(output, trained.task.records(split, predictions))
    else:
        trained.task.write_output(split, predictions, output)
    return len(predictions), used


def run(args: argparse.Namespace) -> int:
    count, used = predict(
        args.run_dir, args.input, args.output, args.format, strict=args.strict, precision=args.precision
    )
    print(f"predicted {count} items ({used} input) -> {args.output}")
    return 0


def add_parser(verbs) -> None:
    parser = verbs.add_parser(
        "predict",
        help="tag or classify a file with a trained run",
        description="Tag or classify raw text, tokenised text or a file in the task's labelled format. NER "
        "writes 'token tag' lines with a blank line between sentences; sentiment 'label<TAB>name<TAB>"
        "text' lines; WSD the framework's key file. An --output ending in .jsonl gets one JSON object "
        "per sentence instead: text, start, end (character offsets of the sentence in the input), "
        "tokens (text, start, end each), and the task's answer: NER tags and entities (text, label, "
        "start, end), sentiment label, label_name and probabilities, WSD instances (chosen key, its "
        "source and every candidate's probability). Offsets count characters of the input file's text "
        "(a leading byte-order mark not counted); a labelled file (CoNLL, SST trees, WSD XML) has no "
        "running text, so its offsets point into its tokens joined by single spaces, one sentence per line.",
        epilog="example: elmo-tasks predict runs/ner_conll2003-seed1 --input news.txt --output news.jsonl",
    )
    parser.add_argument("run_dir", type=Path, help="a run directory (or a model package)")
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument(
        "--output", type=Path, required=True, help="the task's format, or JSON lines if it ends in .jsonl"
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="auto (default): the task's labelled format when the file has its structure (CoNLL: a "
        "-DOCSTART- line, or lines with the same number of columns ending in a tag such as O or B-PER; "
        "never a word count; SST: bracketed trees; TSV: the same number of columns on every line), "
        "raw text otherwise. text: raw text, split into sentences (a line break always ends one) and "
        "tokenised CoNLL/Penn-Treebank style (NLTK, see data/tokenize.py); a sentence of more than "
        f"{MAX_SENTENCE_TOKENS} tokens is cut into pieces. tokenized: one sentence per line, its tokens "
        "between white space, kept as they are (what 'text' meant before). conll (alias: labelled): "
        "the task's labelled format (CoNLL columns, SST trees or TSV, the WSD framework's XML). WSD reads only its XML",
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="backbone numerics: fp32 (exact, default); bf16 where the CPU has bf16 matrix units (AMX, "
        "AVX512-BF16; fp32 with a warning elsewhere) or on a GPU; int8: quantised linear layers (CPU)",
    )
    add_strict_argument(parser)
    parser.set_defaults(run=run)
