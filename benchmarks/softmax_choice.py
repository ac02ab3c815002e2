"""Adaptive softmax against bilm-tf's sampled softmax: training tokens/s and heldout perplexity after
the same steps on the same batches.

Each variant trains the same biLM (``--config``, the default backbone's by default) from the same
initialisation on the same batches of the pretraining corpus, with the vocabulary of the default
backbone's protocol (counted on the first 300,000 sentences, min count 3, at most 50,000 words).
Heldout perplexity is exact for every variant: the adaptive softmax is a normalised distribution,
and the sampled softmax is evaluated with its full softmax (as bilm-tf evaluates it). Training loss
is not compared: the sampled one is an estimate of another objective.

    python benchmarks/softmax_choice.py [--steps 12] [--negatives 8192,1024] [--threads 1] [--no-write]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import random
import time
from pathlib import Path

import torch
from common import DOCS, REPO, command_line, git_revision, machine, write_section
from torch import nn

from elmo_core.char_ids import batch_to_ids
from elmo_core.corpus import batches_of, iter_sentences
from elmo_core.pretrain import BiLmLanguageModel, evaluate_perplexity, load_pretrain_config, word_id_batch
from elmo_core.vocab import Vocabulary

CORPUS = REPO.parent / "shared" / "data" / "corpus"
DEFAULT_STEPS = 12  # about a minute on one thread; other step counts write their own section


def summary(results: dict, adaptive: str) -> str:
    """One sentence from the figures: speed and perplexity of each sampled variant against the adaptive one."""
    base = results[adaptive]
    parts = [
        f"{label}: {r['tokens_per_s'] / base['tokens_per_s']:.2f}x the adaptive softmax's tokens/s, heldout "
        f"perplexity {r['ppl']:.0f} against its {base['ppl']:.0f} after the same steps"
        for label, r in results.items()
        if label != adaptive
    ]
    return "Measured: " + "; ".join(parts) + "."


def train_variant(config, vocab, batches, heldout, softmax: str, negatives: int, initial_bilm: dict) -> dict:
    config = dataclasses.replace(config, softmax=softmax, negative_samples=max(negatives, 1))
    torch.manual_seed(0)
    model = BiLmLanguageModel.from_config(config, len(vocab))
    model.bilm.load_state_dict(initial_bilm)  # the same biLM initialisation for every variant
    before = evaluate_perplexity(model, heldout, vocab, config.batch_tokens)["mean_ppl"]
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    model.train()
    seconds, tokens = 0.0, 0
    for batch in batches:
        started = time.perf_counter()
        out = model(batch_to_ids(batch), word_id_batch(batch, vocab))
        loss = (out["forward_nll"] + out["backward_nll"]) / (2 * out["targets"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
        optimizer.step()
        seconds += time.perf_counter() - started
        tokens += sum(len(s) for s in batch)
    started = time.perf_counter()
    ppl = evaluate_perplexity(model, heldout, vocab, config.batch_tokens)["mean_ppl"]
    return {
        "tokens_per_s": tokens / seconds,
        "ppl_before": before,
        "ppl": ppl,
        "eval_s": time.perf_counter() - started,
        "tokens": tokens,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "bilm_default.yaml")
    parser.add_argument("--train", type=Path, default=CORPUS / "train.txt.xz")
    parser.add_argument("--heldout", type=Path, default=CORPUS / "heldout.txt.xz")
    parser.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help="training steps per variant (after one warm-up step)"
    )
    parser.add_argument("--batch-tokens", type=int, default=1500)
    parser.add_argument("--negatives", default="8192,1024", help="sampled-softmax variants (bilm-tf's default: 8192)")
    parser.add_argument("--heldout-sentences", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_pretrain_config(args.config, {"batch_tokens": args.batch_tokens, "dropout": 0.0})
    started = time.perf_counter()
    sample = (t for _, t in itertools.islice(iter_sentences(args.train, config.max_sentence_tokens), 300_000))
    vocab = Vocabulary.build(sample, config.min_count, config.max_vocab)
    train = [t for _, t in itertools.islice(iter_sentences(args.train, config.max_sentence_tokens), 20_000)]
    heldout = [
        t for _, t in itertools.islice(iter_sentences(args.heldout, config.max_sentence_tokens), args.heldout_sentences)
    ]
    batches = batches_of(train, config.batch_tokens, random.Random(0))[: args.steps + 1]
    warm, timed = batches[:1], batches[1:]
    variants = [("adaptive", 0, f"adaptive (cut-offs {config.cutoffs})")]
    variants += [("sampled", int(n), f"sampled, {int(n)} negatives") for n in args.negatives.split(",")]
    torch.manual_seed(1)
    initial_bilm = BiLmLanguageModel.from_config(config, len(vocab)).bilm.state_dict()
    results = {}
    for softmax, negatives, label in variants:
        train_variant(config, vocab, warm, heldout[:4], softmax, negatives, initial_bilm)  # allocators, caches
        results[label] = train_variant(config, vocab, timed, heldout, softmax, negatives, initial_bilm)
        print(f"{label}: {results[label]}", flush=True)
    base = results[variants[0][2]]["tokens_per_s"]
    tokens = results[variants[0][2]]["tokens"]
    lines = [
        f"| softmax | training tokens/s | vs adaptive | heldout perplexity: untrained | after {args.steps} steps "
        "| heldout eval (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {label} | {r['tokens_per_s']:.0f} | {r['tokens_per_s'] / base:.2f}x | {r['ppl_before']:.0f} | "
        f"{r['ppl']:.1f} | {r['eval_s']:.1f} |"
        for label, r in results.items()
    ]
    text = (
        "## Adaptive vs sampled softmax (`benchmarks/softmax_choice.py`)\n\n"
        f"Command: `{command_line()}`; git {git_revision()}.\n"
        f"Machine: {machine()}. Wall time of this invocation: {time.perf_counter() - started:.0f} s.\n"
        f"Model: `{args.config.name}` (vocabulary {len(vocab):,}: first 300,000 training sentences, min count "
        f"{config.min_count}); the same initial biLM and the same {args.steps} batches of <= {config.batch_tokens} "
        f"padded tokens ({tokens:,} words) from `{args.train.name}` for each softmax, Adam lr {config.lr}, "
        f"no dropout; perplexity on the first {len(heldout)} sentences of `{args.heldout.name}` (exact for both: "
        f"the sampled softmax is evaluated with its full softmax).\n\n"
        + "\n".join(lines)
        + "\n\n"
        + summary(results, variants[0][2])
        + " A short run: it measures the cost per token and the first steps of learning only. The sampled "
        "softmax's cost grows with its negatives (drawn once per batch: (negatives + 1) x projection_dim "
        "multiply-adds per token and direction), not with the vocabulary; the adaptive softmax's with its head "
        "cluster and the share of rare words. At bilm-tf's scale (793k words) a full or adaptive softmax is "
        "large and the sampled one is what bilm-tf could afford; a bilm-tf options file selects it because it "
        "asks for it, and `--set softmax=adaptive` switches.\n"
    )
    print(text)
    if not args.no_write:
        name = "softmax-choice" if args.steps == DEFAULT_STEPS else f"softmax-choice-{args.steps}-steps"
        write_section(DOCS / "benchmarks.md", name, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
