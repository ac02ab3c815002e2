"""elmo-tasks: task models (NER, sentiment, WSD) on a frozen ELMo backbone. One verb per job:

    elmo-tasks embed      sentences -> all biLM layers (bilm-tf HDF5 dump, or an on-disk feature store)
    elmo-tasks train      train a task head from a YAML config (configs/*.yaml); re-running resumes
    elmo-tasks evaluate   score a trained run on a labelled file (conlleval-identical for NER)
    elmo-tasks predict    tag / classify new text with a trained run
    elmo-tasks pretrain   train your own biLM on a tokenised corpus and export the official files
    elmo-tasks benchmark  layers: every task x layer weighting x seed on one backbone

Run `elmo-tasks VERB --help` for each verb's options and an example.
"""
from __future__ import annotations

import argparse
import os
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
                     stateful=stateful, device=getattr(args, "device", "cpu"),
                     precision=getattr(args, "precision", "fp32"))


def command_embed(args: argparse.Namespace) -> int:
    import torch

    from elmo_core.embed import embed_file

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.store is not None:
        return embed_into_store(args)
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        return embed_usage_error("several processes (torchrun) can only write a --store, not an HDF5 --output")
    bilm = backbone_from_args(args, stateful=args.stateful)
    batch_size = args.batch_size or (64 if args.stateful else 256)
    n = embed_file(bilm, args.input, args.output, batch_size=batch_size, stateful=args.stateful,
                   device=args.device, progress=not args.quiet)
    print(f"wrote {n} sentences x {bilm.num_layers} layers x {bilm.output_dim} dims to {args.output}")
    return 0


def embed_usage_error(message: str) -> int:
    print(f"elmo-tasks embed: error: {message}", file=sys.stderr)
    return 2


def embed_into_store(args: argparse.Namespace) -> int:
    """``embed --store DIR``: add the file's sentences to a content-keyed feature store (see
    elmo_core/store.py). Under torchrun every rank embeds its shard and rank 0 commits the index."""
    from elmo_core.embed import read_sentence_file
    from elmo_core.loading import model_identity
    from elmo_core.models import resolve
    from elmo_core.store import build_store_distributed, rank_and_world

    if args.stateful:
        return embed_usage_error("--stateful cannot write a --store: stateful vectors depend on the batches "
                                 "before them, so they cannot be keyed by the sentence alone")
    rank, world = rank_and_world()
    if world > 1 and args.device == "cuda":
        args.device = f"cuda:{os.environ.get('LOCAL_RANK', rank)}"
    sentences = read_sentence_file(args.input)
    bilm = backbone_from_args(args)
    options, weights = (args.options, args.weights) if args.options else resolve(args.backbone or "default")
    model_id = model_identity(options, weights)
    precision = getattr(args, "precision", "fp32")
    if precision != "fp32":  # other numerics give other vectors: they must not share keys with fp32
        model_id = f"{model_id}+{precision}"
    report = build_store_distributed(args.store, bilm, model_id, sentences,
                                     dtype=args.store_dtype, max_batch=args.batch_size or 256, device=args.device,
                                     progress=not args.quiet and rank == 0)
    if rank == 0:
        print(f"store {args.store}: {report.sentences} distinct sentences x {bilm.num_layers} layers x "
              f"{bilm.output_dim} dims ({args.store_dtype}): {report.embedded} embedded, "
              f"{report.already_stored} already stored; {world} process(es), {report.seconds:.1f} s")
    return 0


def command_pretrain(args: argparse.Namespace) -> int:
    from elmo_core.pretrain import Pretrainer, load_pretrain_config

    overrides = parse_overrides(args.set)
    config = load_pretrain_config(args.config, overrides)
    trainer = Pretrainer(config, args.train, args.heldout, args.out, progress=not args.quiet)
    if args.evaluate_only:
        import json

        print(json.dumps(trainer.evaluate_full_heldout()))
        return 0
    result = trainer.run()
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


def command_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .trainer import Trainer

    config = load_config(args.config, parse_overrides(args.set))
    out = args.out or Path("runs") / f"{args.config.stem}-seed{config.get('train', {}).get('seed', 1)}"
    results = Trainer(config, out, progress=not args.quiet).run()
    for split in ("dev", "test"):
        if split in results:
            print(f"{split}: {format_scores(results[split])}")
    print(f"run directory: {out}")
    return 0


def format_scores(scores: dict) -> str:
    keys = [k for k in ("f1", "precision", "recall", "accuracy", "strict_f1", "macro_f1") if k in scores]
    return ", ".join(f"{k} {scores[k]:.2f}" for k in keys)


def read_input_split(task, path: Path, input_format: str):
    """A CoNLL file (tags optional for prediction) or raw text, one tokenised sentence per line."""
    from elmo_core.embed import read_sentence_file

    if hasattr(task, "read_input"):  # sentiment / WSD read their own formats ("conll" = the labelled one)
        split, input_format = task.read_input(path, input_format)
        task.tensorise(split)
        return split, input_format
    if input_format == "auto":
        first = next((l for l in path.read_text(encoding="utf-8", errors="replace").splitlines() if l.strip()), "")
        input_format = "conll" if len(first.split()) >= 2 and ("-DOCSTART-" in first or len(first.split()) == len(task.columns)) else "text"
    if input_format == "conll":
        split = task.read_split(path)
    else:
        from .ner import SplitData
        from data.conll import ConllDataset, ConllStats, Sentence

        sentences = [Sentence(tokens, {task.tag_column: ["O"] * len(tokens)}, i + 1, None)
                     for i, tokens in enumerate(read_sentence_file(path))]
        split = SplitData(ConllDataset(str(path), sentences, ConllStats(), task.file_scheme, task.tag_column, task.file_scheme),
                          task.tag_column)
    task.tensorise(split)
    return split, input_format


def command_evaluate(args: argparse.Namespace) -> int:
    from .run_dir import attach_live_features, load_run

    task, model, bilm = load_run(args.run_dir, precision=args.precision)
    split, _ = read_input_split(task, args.data, "conll")
    attach_live_features(split, bilm)
    predictions = task.predict(model, split)
    scores = task.score(split, predictions)
    print(scores.pop("report"))
    print(format_scores(scores))
    if args.output:
        task.write_predictions(split, predictions, args.output)
        print(f"predictions: {args.output}")
    return 0


def command_predict(args: argparse.Namespace) -> int:
    from .run_dir import attach_live_features, load_run

    task, model, bilm = load_run(args.run_dir)
    split, used = read_input_split(task, args.input, args.format)
    attach_live_features(split, bilm)
    predictions = task.predict(model, split)
    if hasattr(task, "write_output"):  # sentiment: label per sentence; WSD: key file
        task.write_output(split, predictions, args.output)
        print(f"predicted {len(predictions)} items ({used} input) -> {args.output}")
        return 0
    with args.output.open("w", encoding="utf-8") as out:
        for tokens, tags in zip(split.tokens, predictions):
            out.write("\n".join(f"{t} {p}" for t, p in zip(tokens, tags)) + "\n\n")
    print(f"tagged {len(predictions)} sentences ({used} input) -> {args.output}")
    return 0


def command_benchmark_layers(args: argparse.Namespace) -> int:
    from .layer_benchmark import MIXES, TASK_CONFIGS, run_grid

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASK_CONFIGS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {', '.join(TASK_CONFIGS)}")
    if (args.options is None) != (args.weights is None):
        raise ElmoFileError("--options and --weights go together")
    backbone = ({"name": None, "options": str(args.options), "weights": str(args.weights)} if args.options
                else {"name": args.backbone or "default"})
    mixes = [m.strip() for m in args.mixes.split(",")] if args.mixes else None
    if mixes and any(m not in MIXES for m in mixes):
        raise ValueError(f"unknown mix in {mixes}; choose from {', '.join(MIXES)}")
    out = args.out or Path("runs") / ("layers-reduced" if args.reduced else "layers")
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    store = None if args.no_store else (args.store or out / "features")
    run_grid(tasks, args.seeds, backbone, out, reduced=args.reduced, mixes=mixes, extra=parse_overrides(args.set),
             jobs=args.jobs, store=store)
    print((out / "table.md").read_text())
    print(f"tables, CSV and plots in {out}")
    return 0


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
    destination = embed.add_mutually_exclusive_group(required=True)
    destination.add_argument("--output", type=Path, help="HDF5 file to write (written atomically)")
    destination.add_argument("--store", type=Path, metavar="DIR",
                             help="instead of --output: add the sentences to a feature store directory (memory-mapped "
                                  "chunks keyed by model + sentence; resumable; shards over ranks under torchrun "
                                  "--no-python elmo-tasks embed ...). See docs/store.md")
    embed.add_argument("--store-dtype", choices=("float16", "float32"), default="float16",
                       help="precision of the --store vectors (default float16)")
    embed.add_argument("--batch-size", type=int, default=None,
                       help="sentences per batch: default 256 (length-sorted, at most 4000 tokens a batch); "
                            "stateful mode batches the file's lines in order, default 64")
    embed.add_argument("--stateful", action="store_true",
                       help="carry LSTM state from batch to batch like bilm-tf (default: every sentence starts from zero)")
    embed.add_argument("--device", default="cpu", help="cpu or cuda")
    embed.add_argument("--precision", default="fp32", choices=["fp32", "int8", "bf16", "fp16"],
                       help="fp32 (exact, default); int8: dynamic quantisation of the linear layers (CPU); "
                            "bf16/fp16: autocast (GPU)")
    embed.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    embed.add_argument("--quiet", action="store_true", help="no progress bar")
    embed.set_defaults(run=command_embed)

    train = verbs.add_parser(
        "train", help="train a task model from a YAML config",
        description="Train a task head on the frozen backbone. The run directory receives the resolved config, "
                    "vocabularies, per-epoch metrics (metrics.csv/json), best.pt (best dev score) and last.pt, "
                    "dev/test predictions and conlleval reports. Running the same command again resumes.",
        epilog="example: elmo-tasks train configs/ner_conll2003.yaml --set train.seed=2 --out runs/ner-s2")
    train.add_argument("config", type=Path, help="YAML config (see configs/)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a dotted config key, e.g. model.hidden=200")
    train.add_argument("--out", type=Path, help="run directory (default runs/<config>-seed<seed>)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(run=command_train)

    evaluate = verbs.add_parser("evaluate", help="score a trained run on a labelled file",
                                description="Score a run's best checkpoint on a CoNLL file with conlleval's metrics.",
                                epilog="example: elmo-tasks evaluate runs/ner_conll2003-seed1 --data eng.testb")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--data", type=Path, required=True, help="labelled file in the task's format")
    evaluate.add_argument("--output", type=Path, help="also write 'token gold pred' lines (conlleval input)")
    evaluate.add_argument("--precision", default="fp32", choices=["fp32", "int8", "bf16", "fp16"],
                          help="backbone numerics for this evaluation (e.g. int8 to measure its F1 cost)")
    evaluate.set_defaults(run=command_evaluate)

    predict = verbs.add_parser("predict", help="tag a file with a trained run",
                               description="Tag raw text (one tokenised sentence per line) or a CoNLL file.",
                               epilog="example: elmo-tasks predict runs/ner_conll2003-seed1 --input news.txt --output news.tags")
    predict.add_argument("run_dir", type=Path)
    predict.add_argument("--input", type=Path, required=True)
    predict.add_argument("--output", type=Path, required=True, help="'token tag' lines, blank line between sentences")
    predict.add_argument("--format", choices=["auto", "text", "conll"], default="auto")
    predict.set_defaults(run=command_predict)

    benchmark = verbs.add_parser("benchmark", help="benchmarks that are one command (layer weighting)")
    benchmarks = benchmark.add_subparsers(dest="benchmark", required=True, metavar="WHICH")
    layers = benchmarks.add_parser(
        "layers", help="every task x layer weighting x seed",
        description="Train and evaluate each task's head with each layer weighting (layer 0, 1, 2 only,\n"
                    "top, equal average, learned ScalarMix with lambda=1 and 0.001, concatenation), reusing\n"
                    "ELMo features across cells. Model selection uses dev; test is reported. Writes cells.csv,\n"
                    "summary.csv, table.md, score_by_mix.png and learned_weights.png to --out.\n\n"
                    "Finished cells are not run again, so a killed grid resumes where it stopped.\n"
                    "Measured on 2 CPU cores with --jobs 2: the reduced grid 13 min (1 seed) or 35 min\n"
                    "(3 seeds); the full grid with 3 seeds about 2.4 hours (docs/layer_weighting.md).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  elmo-tasks benchmark layers --seeds 3 --reduced --jobs 2          # the quick grid, 5 tasks\n"
               "  elmo-tasks benchmark layers --tasks ner,pos --mixes layer1,concat  # a slice of the full grid\n"
               "  elmo-tasks benchmark layers --options O.json --weights W.hdf5      # your own backbone")
    layers.add_argument("--tasks", default="ner,pos,chunk,sst5,wsd", help="comma-separated: ner,pos,chunk,sst5,sst2,wsd")
    layers.add_argument("--seeds", type=int, default=3, help="seeds 1..N per cell (mean ± std in the tables). Default 3")
    layers.add_argument("--mixes", help="comma-separated subset of the mixes (default: all eight)")
    layers.add_argument("--reduced", action="store_true", help="the quick grid (subsets, fewer epochs; see docs/layer_weighting.md)")
    layers.add_argument("--out", type=Path, help="output directory (default runs/layers[-reduced])")
    layers.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override for every cell")
    layers.add_argument("--jobs", type=int, default=1,
                        help="cells trained at once, in worker processes of one thread each (e.g. 2 on a "
                             "2-core machine); features are still computed once. Default 1")
    stored = layers.add_mutually_exclusive_group()
    stored.add_argument("--store", type=Path, metavar="DIR",
                        help="feature store the cells read; the first invocation fills it, later ones (and "
                             "resumed grids) skip the backbone. Default OUT/features")
    stored.add_argument("--no-store", action="store_true",
                        help="keep the features in memory only (computed again by every invocation)")
    add_backbone_arguments(layers)
    layers.set_defaults(run=command_benchmark_layers)

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
    pretrain.add_argument("--evaluate-only", action="store_true",
                          help="print the checkpoint's perplexity on the whole heldout file (JSON) and stop")
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
