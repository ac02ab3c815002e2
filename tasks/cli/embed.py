"""``elmo-tasks embed``: every biLM layer of each line, as bilm-tf's HDF5 dump or into a feature store."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from elmo_core.embed import INPUT_FORMATS

from ..errors import UsageError
from .common import (
    PRECISIONS,
    add_backbone_arguments,
    add_strict_argument,
    backbone_from_args,
    check_backbone_arguments,
)


def embed_to_hdf5(args: argparse.Namespace) -> str:
    from elmo_core.embed import embed_file

    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise UsageError("several processes (torchrun) can only write a --store, not an HDF5 --output")
    bilm = backbone_from_args(args, stateful=args.stateful)
    batch_size = args.batch_size or (64 if args.stateful else 256)
    n = embed_file(
        bilm,
        args.input,
        args.output,
        batch_size=batch_size,
        stateful=args.stateful,
        device=args.device,
        progress=not args.quiet,
        input_format=args.format,
    )
    return f"wrote {n} sentences x {bilm.num_layers} layers x {bilm.output_dim} dims to {args.output}"


def embed_to_store(args: argparse.Namespace) -> str | None:
    """Add the file's sentences to a content-keyed feature store (see elmo_core/store.py). Under
    torchrun every rank embeds its shard and rank 0 commits the index (and reports)."""
    from elmo_core.embed import read_sentences
    from elmo_core.loading import model_identity
    from elmo_core.models import resolve
    from elmo_core.store import build_store_distributed, rank_and_world

    if args.stateful:
        raise UsageError(
            "--stateful cannot write a --store: stateful vectors depend on the batches before them, "
            "so they cannot be keyed by the sentence alone"
        )
    rank, world = rank_and_world()
    if world > 1 and args.device == "cuda":
        args.device = f"cuda:{os.environ.get('LOCAL_RANK', rank)}"
    sentences = read_sentences(args.input, args.format)
    bilm = backbone_from_args(args)
    options, weights = (args.options, args.weights) if args.options else resolve(args.backbone or "default")
    model_id = model_identity(options, weights)
    if bilm.precision != "fp32":  # other numerics give other vectors: they must not share keys with fp32
        model_id = f"{model_id}+{bilm.precision}"
    report = build_store_distributed(
        args.store,
        bilm,
        model_id,
        sentences,
        dtype=args.store_dtype,
        max_batch=args.batch_size or 256,
        device=args.device,
        progress=not args.quiet and rank == 0,
        wait=False if args.no_wait else None,
        commit_seconds=args.commit_seconds,
    )
    if rank != 0:
        return None
    return (
        f"store {args.store}: {report.sentences} distinct sentences x {bilm.num_layers} layers x "
        f"{bilm.output_dim} dims ({args.store_dtype}): {report.embedded} embedded, "
        f"{report.already_stored} already stored; {world} process(es), {report.seconds:.1f} s"
    )


def check_arguments(args: argparse.Namespace) -> None:
    """Every argument checked, and every output path, before the backbone is loaded."""
    from elmo_core.io import check_output_dir, check_output_file

    check_backbone_arguments(args)
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not args.commit_seconds > 0:
        raise UsageError(f"--commit-seconds must be > 0, got {args.commit_seconds}")
    if args.threads < 0:
        raise UsageError(f"--threads must be >= 0 (0: torch's choice), got {args.threads}")
    if args.store is not None:
        check_output_dir(args.store, "--store")
    else:
        check_output_file(args.output, "--output")


def run(args: argparse.Namespace) -> int:
    import torch

    check_arguments(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    message = embed_to_store(args) if args.store is not None else embed_to_hdf5(args)
    if message:
        print(message)
    return 0


def add_parser(verbs) -> None:
    parser = verbs.add_parser(
        "embed",
        help="embed sentences with all biLM layers",
        description="Embed the sentences of a file: one whitespace-tokenised sentence per line by default "
        "(bilm-tf's format), raw text, or a CoNLL file (see --format). The HDF5 output has one dataset "
        "per sentence index ('0', '1', ...; with tokenised input, the line index) of shape (layers, "
        "tokens, dim) and a 'sentence_to_index' JSON dataset mapping each sentence's tokens, joined by "
        "spaces, to its index: the format of bilm-tf's dump_bilm_embeddings.",
        epilog="example: elmo-tasks embed --options options.json --weights weights.hdf5 "
        "--input sentences.txt --output elmo.hdf5",
    )
    add_backbone_arguments(parser)
    parser.add_argument("--input", type=Path, required=True, help="a UTF-8 text file (see --format)")
    parser.add_argument(
        "--format",
        choices=INPUT_FORMATS,
        default="auto",
        help="auto (default): conll when the file has CoNLL's structure (a -DOCSTART- line, or lines with "
        "the same number of columns ending in a tag such as O or B-PER; never a word count), tokenized "
        "otherwise, so that dataset i stays line i. tokenized: one sentence per line, tokens between "
        "white space. text: raw text, split into sentences (a line break always ends one) and "
        "tokenised CoNLL/Penn-Treebank style (data/tokenize.py); datasets then follow the sentences "
        "found. conll: the first column of a CoNLL file, a blank line between sentences",
    )
    destination = parser.add_mutually_exclusive_group(required=True)
    destination.add_argument("--output", type=Path, help="HDF5 file to write (written atomically)")
    destination.add_argument(
        "--store",
        type=Path,
        metavar="DIR",
        help="instead of --output: add the sentences to a feature store directory (memory-mapped "
        "chunks keyed by model + sentence; resumable; shards over ranks under torchrun "
        "--no-python elmo-tasks embed ...). See docs/store.md",
    )
    parser.add_argument(
        "--store-dtype",
        choices=("float16", "float32"),
        default="float16",
        help="precision of the --store vectors (default float16)",
    )
    parser.add_argument(
        "--commit-seconds",
        type=float,
        default=60.0,
        metavar="S",
        help="--store: commit the buffered vectors at least every S seconds (default 60) as well as every "
        "64 MiB, so a kill -9 loses at most about S seconds of work; what is stored does not depend on it",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="sentences per batch: default 256 (length-sorted, at most 4000 tokens a batch); "
        "stateful mode batches the file's lines in order, default 64",
    )
    parser.add_argument(
        "--stateful",
        action="store_true",
        help="carry LSTM state from batch to batch like bilm-tf (default: every sentence starts from zero)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="fp32 (exact, default); int8: dynamic quantisation of the linear layers (CPU); bf16: autocast on a "
        "GPU, or on a CPU with bf16 matrix units (AMX, AVX512-BF16; fp32 with a warning elsewhere); fp16: autocast "
        "(GPU)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_strict_argument(parser)
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="when another process is writing the same --store shard, fail at once naming its PID instead "
        "of waiting for it (also: ELMO_TASKS_NO_WAIT=1)",
    )
    parser.set_defaults(run=run)
