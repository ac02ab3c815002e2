"""elmo-tasks: task models (NER, sentiment, WSD) on a frozen ELMo backbone. One verb per job:

    elmo-tasks embed      sentences -> all biLM layers (bilm-tf HDF5 dump, or an on-disk feature store)
    elmo-tasks train      train a task head from a YAML config (configs/*.yaml); re-running resumes
    elmo-tasks evaluate   score a trained run on a labelled file (conlleval-identical for NER)
    elmo-tasks predict    tag / classify new text with a trained run
    elmo-tasks package    bundle a trained run and its backbone into one file (predict/evaluate take it)
    elmo-tasks pretrain   train your own biLM on a tokenised corpus and export the official files
    elmo-tasks benchmark  layers: every task x layer weighting x seed on one backbone

Run `elmo-tasks VERB --help` for each verb's options and an example.
"""

from __future__ import annotations

import argparse
import sys

from data.errors import DataError
from data.warnings import collecting
from elmo_core.errors import BackboneError

from ..errors import TasksError
from . import benchmark, embed, evaluate, package, predict, pretrain, train

# The user errors of each package. Anything else is a bug and keeps its traceback.
USER_ERRORS = (DataError, BackboneError, TasksError)
VERBS = (embed, train, evaluate, predict, package, benchmark, pretrain)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elmo-tasks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        verb.add_parser(verbs)
    return parser


def describe_os_error(err: OSError) -> str:
    """One line naming the path: ``PATH: No space left on device``."""
    path = err.filename if err.filename is not None else ""
    reason = err.strerror or str(err)
    return f"{path}: {reason}" if path else reason


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def warn(line: str) -> None:  # a counted warning (data/warnings.py), one line per kind and file
        print(f"elmo-tasks {args.verb}: {line}", file=sys.stderr, flush=True)

    try:
        with collecting(strict=getattr(args, "strict", False), log=warn):
            return args.run(args)
    except USER_ERRORS as err:
        print(f"elmo-tasks {args.verb}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"elmo-tasks {args.verb}: error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"elmo-tasks {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
