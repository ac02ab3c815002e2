"""``elmo-tasks pretrain``: train your own biLM on a tokenised corpus and export the official files;
under torchrun, data-parallel over the processes (rank 0 writes, see elmo_core/pretrain.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import UsageError
from .common import add_strict_argument


def pretrain(
    config_path: Path | None,
    train: str | Path,
    heldout: str | Path,
    out: Path,
    overrides: dict | None = None,
    progress: bool = True,
    evaluate_only: bool = False,
    wait: bool | None = None,
    bilm_tf_options: Path | None = None,
    vocab: Path | None = None,
    log=None,
    timeout_minutes: float | None = None,
    init_from: str | None = None,
) -> dict:
    """Pretrain (resuming from ``out``) and export; with ``evaluate_only``, the checkpoint's heldout
    perplexity. The config is a YAML file (``config_path``) or a bilm-tf options JSON
    (``bilm_tf_options``, mapped by :mod:`elmo_core.bilm_tf`; the mapping goes to ``log``, stderr by
    default). ``train`` / ``heldout``: a corpus file or a glob of shards; ``vocab``: a vocabulary file
    in bilm-tf's format (else counted from the corpus). ``wait``: another process pretraining in
    ``out`` is waited for (``True``), refused at once naming its PID (``False``), or waited for unless
    ``ELMO_TASKS_NO_WAIT=1`` (``None``). Under torchrun every rank calls this; rank 0 returns the
    result, the others ``{"rank", "world_size"}``; ``timeout_minutes`` bounds how long a rank waits
    for the others (default: :data:`elmo_core.distributed.DEFAULT_TIMEOUT_MINUTES`). ``init_from``
    (a model name or a folder with options.json + weights.hdf5) continues that biLM; alone, without
    a config, it trains with the config's defaults on the model's own options."""
    from elmo_core.distributed import DEFAULT_TIMEOUT_MINUTES
    from elmo_core.errors import BackboneUsageError
    from elmo_core.io import log_to_stderr
    from elmo_core.pretrain import Pretrainer, load_pretrain_config

    log = log or log_to_stderr
    if config_path is not None and bilm_tf_options is not None:
        raise BackboneUsageError("pretrain takes one config: --config YAML or --bilm-tf-options JSON, not both")
    if config_path is None and bilm_tf_options is None and init_from is None:
        raise BackboneUsageError(
            "pretrain needs a config: --config YAML, --bilm-tf-options JSON, or --init-from MODEL to continue a biLM"
        )
    overrides = {**(overrides or {}), **({"init_from": init_from} if init_from is not None else {})}
    if config_path is None and bilm_tf_options is None:
        from data.config import merge_overrides
        from elmo_core.pretrain import pretrain_config_from_tree

        overrides = {**overrides, **({"vocab": str(vocab)} if vocab is not None else {})}
        config = pretrain_config_from_tree(merge_overrides({}, overrides), "--init-from")
    elif bilm_tf_options is not None:
        from elmo_core.bilm_tf import load_bilm_tf_config

        config, mapping = load_bilm_tf_config(bilm_tf_options, vocab, overrides or None)
        log(mapping.report())
    else:
        overrides = {**overrides, **({"vocab": str(vocab)} if vocab is not None else {})}
        config = load_pretrain_config(config_path, overrides or None)
    timeout = DEFAULT_TIMEOUT_MINUTES if timeout_minutes is None else timeout_minutes
    trainer = Pretrainer(config, train, heldout, out, progress=progress, wait=wait, log=log, timeout_minutes=timeout)
    return trainer.evaluate_full_heldout() if evaluate_only else trainer.run()


def run(args: argparse.Namespace) -> int:
    from data.config import parse_overrides
    from elmo_core.store import rank_and_world

    if args.timeout_minutes is not None and not args.timeout_minutes > 0:
        raise UsageError(f"--timeout-minutes must be > 0, found {args.timeout_minutes:g}")
    result = pretrain(
        args.config,
        args.train,
        args.heldout,
        args.out,
        {
            **parse_overrides(args.set),
            **({"strict": True} if args.strict else {}),
            **({"device": args.device} if args.device is not None else {}),
            **({"precision": args.precision} if args.precision is not None else {}),
        },
        progress=not args.quiet,
        evaluate_only=args.evaluate_only,
        wait=False if args.no_wait else None,
        bilm_tf_options=args.bilm_tf_options,
        vocab=args.vocab,
        timeout_minutes=args.timeout_minutes,
        init_from=args.init_from,
    )
    if rank_and_world()[0] != 0:  # under torchrun rank 0 reports for all
        return 0
    if args.evaluate_only:
        print(json.dumps(result))
        return 0
    print(
        f"heldout perplexity: forward {result['forward_ppl']:.2f}, backward {result['backward_ppl']:.2f}, "
        f"mean {result['mean_ppl']:.2f} after {result['tokens_seen']:,} tokens ({result['seconds'] / 60:.1f} min)"
    )
    corpus = result.get("corpus")
    if corpus:
        print(
            f"corpus: {corpus['sentences']:,} sentences, {corpus['skipped_too_long']:,} "
            f"({corpus['skipped_too_long_percent']:.1f}%) skipped as longer than "
            f"max_sentence_tokens={corpus['max_sentence_tokens']}"
        )
    if result.get("world_size", 1) > 1:
        print(f"trained data-parallel by {result['world_size']} processes (torchrun)")
    if result.get("device", "cpu") != "cpu":
        print(f"trained on {result['device']} ({result['precision']})")
    print(f"exported {args.out / 'options.json'} and {args.out / 'weights.hdf5'}")
    sys.stdout.flush()
    return 0


EPILOG = """examples:
  elmo-tasks pretrain --config configs/bilm_default.yaml \\
      --train ../shared/data/corpus/train.txt.xz --heldout ../shared/data/corpus/heldout.txt.xz --out runs/bilm

  adapting a biLM to your domain's text (bilm-tf's restart.py): continue the shipped default
  elmo-tasks pretrain --init-from default --train domain.txt --heldout domain_heldout.txt --out runs/domain \
      [--config configs/bilm_default.yaml without its model section] [--set lr=0.0005]

  coming from bilm-tf (its train_elmo.py options, vocabulary and --train_prefix shards):
  elmo-tasks pretrain --bilm-tf-options options.json --vocab vocab.txt \\
      --train 'training-monolingual/news.en-*' --heldout 'heldout-monolingual/news.en.heldout-00000-*' \\
      --out runs/bilm [--set softmax=adaptive] [--set threads=4]

  The bilm-tf options map onto the config (model, batch_size x unroll_steps -> batch_tokens,
  n_epochs x n_train_tokens -> max_tokens_seen, all_clip_norm_val, dropout, n_negative_samples_batch
  -> the sampled softmax); what is applied and what is ignored, and why, is printed before training
  (docs/bilm_tf.md). Quote globs so the shell passes them as they are.

  data-parallel over N processes (gloo, CPU; each rank trains on its share of every batch, so the
  run equals one process up to float rounding at dropout 0; rank 0 alone writes --out):
  torchrun --standalone --nproc_per_node 2 --no-python elmo-tasks pretrain --config ... --set threads=1
  python -m torch.distributed.run --standalone --nproc_per_node 2 -m tasks.cli pretrain --config ...
  Re-running resumes from the last checkpoint, with any number of processes (docs/pretraining.md).

  on a GPU (bf16 autocast on Ampere or newer; fp16 with a loss scale on older GPUs):
  elmo-tasks pretrain --config configs/bilm_strong.yaml --device cuda --precision bf16 --train ... --out runs/bilm
  torchrun --standalone --nproc_per_node 8 --no-python elmo-tasks pretrain --device cuda ...   (one GPU per
  process, gradients over NCCL). A run may move between CPU and GPU on resume: --device only changes
  float rounding (and the generator dropout masks are drawn from)."""


def add_parser(verbs) -> None:
    parser = verbs.add_parser(
        "pretrain",
        help="pretrain a biLM on a tokenised corpus and export it",
        description="Train forward and backward LSTM language models over a character CNN (the architecture "
        "elmo_core loads) and export options.json + weights.hdf5 in the official layout. The whole "
        "config is checked first. Re-running the same command in the same --out resumes from the "
        "last checkpoint; budgets (max_tokens_seen, max_minutes) may be raised on resume. Under torchrun "
        "the processes train data-parallel (DistributedDataParallel: gloo on CPU, NCCL on GPUs) and rank 0 "
        "writes --out.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config = parser.add_mutually_exclusive_group()
    config.add_argument("--config", type=Path, help="YAML config (see configs/bilm_*.yaml)")
    config.add_argument(
        "--bilm-tf-options",
        type=Path,
        metavar="OPTIONS.json",
        help="a bilm-tf options JSON (train_elmo.py's, or an official model's) instead of --config: "
        "its lstm/char_cnn sections and training options are mapped onto our config",
    )
    parser.add_argument(
        "--init-from",
        metavar="NAME|DIR",
        help="continue an existing biLM (bilm-tf's restart.py; adapting it to your domain's text): a model "
        "name (default, default@v2, small, original, ...) or a folder with options.json + weights.hdf5. "
        "Its weights start the run; so does its softmax.pt (a run folder's) when --vocab is that run's "
        "vocab.txt, else the softmax starts fresh. Without --config, the config's defaults "
        "and the model's own options are used",
    )
    parser.add_argument(
        "--train",
        required=True,
        metavar="FILE|'GLOB'",
        help="corpus: one tokenised sentence per line (.xz/.gz ok), or a quoted glob of shard files "
        "(bilm-tf's --train_prefix, e.g. 'DIR/*.txt'), read in sorted order",
    )
    parser.add_argument("--heldout", required=True, metavar="FILE|'GLOB'", help="heldout corpus, same format")
    parser.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, log, exported model)")
    parser.add_argument(
        "--vocab",
        type=Path,
        metavar="VOCAB.txt",
        help="softmax vocabulary in bilm-tf's format (<S>, </S>, <UNK> on the first three lines, then one token "
        "per line by descending frequency); default: counted from the corpus (min_count, max_vocab)",
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a dotted config key, e.g. lr=0.001 or model.lstm.dim=256 (repeatable; with "
        "--bilm-tf-options, applied after the mapping)",
    )
    parser.add_argument(
        "--device",
        metavar="cpu|cuda|cuda:N",
        help="where to train (config key device, default cpu); under torchrun, cuda gives each rank cuda:LOCAL_RANK",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        help="config key precision (default fp32): bf16 autocast on CPUs with bf16 matrix units and on "
        "GPUs that support it; fp16 (GPU only) with a dynamic loss scale",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_strict_argument(parser, "strict")
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="when another process is pretraining in --out, fail at once naming its PID instead of "
        "waiting for it (also: ELMO_TASKS_NO_WAIT=1)",
    )
    parser.add_argument(
        "--timeout-minutes",
        type=float,
        metavar="MINUTES",
        help="under torchrun: how long a rank waits for the others (a hung rank, or rank 0's heldout "
        "evaluation and export) before it stops with an error (default: 30)",
    )
    parser.add_argument(
        "--evaluate-only",
        action="store_true",
        help="print the checkpoint's perplexity on the whole heldout file (JSON) and stop",
    )
    parser.set_defaults(run=run)
