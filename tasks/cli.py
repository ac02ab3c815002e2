"""The ``elmo-tasks`` command line: one verb per job.

    elmo-tasks embed     sentences -> HDF5 of all biLM layers (bilm-tf dump format)
    elmo-tasks train     train a task model from a YAML config
    elmo-tasks evaluate  score a trained run on a data file
    elmo-tasks predict   tag / classify a file with a trained run
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data.errors import DataFormatError
from elmo_core.errors import ElmoFileError, ModelNotAvailableError

EXPECTED_ERRORS = (DataFormatError, ElmoFileError, ModelNotAvailableError, FileNotFoundError, ValueError)


def add_backbone_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("backbone (a model name, or an options JSON + HDF5 weights)")
    group.add_argument("--backbone", default=None, metavar="NAME",
                       help="named model: default (shipped), small, medium, original, original-5.5b (downloaded)")
    group.add_argument("--options", type=Path, help="options JSON in the bilm-tf layout")
    group.add_argument("--weights", type=Path, help="HDF5 weights in the bilm-tf layout")


def backbone_from_args(args: argparse.Namespace, stateful: bool = False):
    from elmo_core import load_bilm

    if (args.options is None) != (args.weights is None):
        raise ElmoFileError("--options and --weights go together")
    return load_bilm(name=args.backbone, options=args.options, weights=args.weights,
                     stateful=stateful, device=getattr(args, "device", "cpu"))


def command_embed(args: argparse.Namespace) -> int:
    import torch

    from elmo_core.embed import embed_file

    if args.threads:
        torch.set_num_threads(args.threads)
    bilm = backbone_from_args(args, stateful=args.stateful)
    n = embed_file(bilm, args.input, args.output, batch_size=args.batch_size, stateful=args.stateful,
                   device=args.device, progress=not args.quiet)
    print(f"wrote {n} sentences x {bilm.num_layers} layers x {bilm.output_dim} dims to {args.output}")
    return 0


def command_pretrain(args: argparse.Namespace) -> int:
    from elmo_core.pretrain import Pretrainer, load_pretrain_config

    overrides = parse_overrides(args.set)
    config = load_pretrain_config(args.config, overrides)
    result = Pretrainer(config, args.train, args.heldout, args.out, progress=not args.quiet).run()
    print(f"heldout perplexity: forward {result['forward_ppl']:.2f}, backward {result['backward_ppl']:.2f}, "
          f"mean {result['mean_ppl']:.2f} after {result['tokens_seen']:,} tokens ({result['seconds'] / 60:.1f} min)")
    print(f"exported {args.out / 'options.json'} and {args.out / 'weights.hdf5'}")
    return 0


def parse_overrides(pairs: list[str] | None) -> dict:
    """``key=value`` pairs; values are parsed as YAML (numbers, lists, booleans)."""
    import yaml

    overrides = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elmo-tasks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    embed = verbs.add_parser(
        "embed", help="embed sentences with all biLM layers",
        description="Embed a file with one whitespace-tokenised sentence per line. The HDF5 output has one "
                    "dataset per line index ('0', '1', ...) of shape (layers, tokens, dim) and a "
                    "'sentence_to_index' JSON dataset: the format of bilm-tf's dump_bilm_embeddings.",
        epilog="example: elmo-tasks embed --options options.json --weights weights.hdf5 "
               "--input sentences.txt --output elmo.hdf5")
    add_backbone_arguments(embed)
    embed.add_argument("--input", type=Path, required=True, help="UTF-8 text, one tokenised sentence per line")
    embed.add_argument("--output", type=Path, required=True, help="HDF5 file to write (written atomically)")
    embed.add_argument("--batch-size", type=int, default=64,
                       help="sentences per batch (default 64); stateful mode batches the file's lines in order")
    embed.add_argument("--stateful", action="store_true",
                       help="carry LSTM state from batch to batch like bilm-tf (default: every sentence starts from zero)")
    embed.add_argument("--device", default="cpu", help="cpu or cuda")
    embed.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    embed.add_argument("--quiet", action="store_true", help="no progress bar")
    embed.set_defaults(run=command_embed)

    pretrain = verbs.add_parser(
        "pretrain", help="pretrain a biLM on a tokenised corpus and export it",
        description="Train forward and backward LSTM language models over a character CNN (the "
                    "architecture elmo_core loads) and export options.json + weights.hdf5 in the official "
                    "layout. Re-running the same command in the same --out resumes from the last checkpoint.",
        epilog="example: elmo-tasks pretrain --config configs/bilm_default.yaml "
               "--train ../shared/data/corpus/train.txt.xz --heldout ../shared/data/corpus/heldout.txt.xz --out runs/bilm")
    pretrain.add_argument("--config", type=Path, required=True, help="YAML config (see configs/bilm_*.yaml)")
    pretrain.add_argument("--train", type=Path, required=True, help="corpus: one tokenised sentence per line (.xz/.gz ok)")
    pretrain.add_argument("--heldout", type=Path, required=True, help="heldout corpus, same format")
    pretrain.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, log, exported model)")
    pretrain.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    pretrain.add_argument("--quiet", action="store_true", help="no progress bar")
    pretrain.set_defaults(run=command_pretrain)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except EXPECTED_ERRORS as err:
        print(f"elmo-tasks {args.verb}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"elmo-tasks {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
