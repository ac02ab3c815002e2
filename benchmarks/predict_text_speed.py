"""Throughput of ``elmo-tasks predict`` on raw text: tokens per second, tokenisation included, and
the tokeniser's share of the time.

The document: CoNLL-2003 dev + test (eng.testa, eng.testb; ~97k tokens) turned back into running
text, one paragraph per document (the detokenised text of ``benchmarks/tokenizer_choice.py``). The
model: an NER run trained here unless ``--run`` names one, on the main config with the shipped
``default`` backbone, GloVe off (``model.words.pretrained: null``), the first ``--train-sentences``
training sentences and one epoch (its accuracy does not matter: prediction costs the same).

Stages are timed in one process with ``--threads`` torch threads, as ``predict`` runs them: read
and tokenise the file (data/tokenize.py), tensorise + backbone + head (batched, live features),
records + JSON lines. Loading the run and importing NLTK are reported apart (once per process). Then
the command itself runs as a subprocess (``OMP_NUM_THREADS=--threads``), start-up and loading included.

    python benchmarks/predict_text_speed.py [--run RUN_DIR] [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import DOCS, REPO, command_line, git_revision, machine, write_section
from tokenizer_choice import CONLL, build_text, read_documents


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return "unknown CPU"


def train_run(out: Path, sentences: int) -> Path:
    from tasks.registry import load_task_config
    from tasks.trainer import Trainer

    config = load_task_config(
        REPO / "configs" / "ner_conll2003.yaml",
        {
            "data.dir": str(CONLL),
            "data.limit": {"train": sentences, "dev": 200},
            "data.test": None,
            "backbone.name": "default",
            "backbone.store": None,
            "model.words.pretrained": None,
            "train.epochs": 1,
            "train.threads": 2,
        },
    )
    Trainer(config, out, progress=False, log=lambda *_: None).run()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a trained NER run (default: train a small one, see above)")
    parser.add_argument("--train-sentences", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--section", default="predict-text-speed", help="the docs/benchmarks.md section to (re)write")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    import torch

    from data.tokenize import read_sentences, split_text
    from tasks.features import backbone_identity
    from tasks.records import write_jsonl
    from tasks.run_dir import load_run

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="predict-speed-"))
    try:
        text, gold, _, _ = build_text(
            read_documents(CONLL / "eng.testa") + read_documents(CONLL / "eng.testb"), "detok"
        )
        document = work / "document.txt"
        document.write_text(text + "\n", encoding="utf-8")
        run = args.run or train_run(work / "run", args.train_sentences)
        model_note = (
            f"`{args.run}`"
            if args.run
            else f"an NER run trained by this script: `configs/ner_conll2003.yaml` with the shipped `default` "
            f"backbone, `model.words.pretrained: null` (no GloVe), the first {args.train_sentences} sentences of "
            f"eng.train, 1 epoch"
        )
        started = time.perf_counter()
        trained = load_run(run)
        load_seconds = time.perf_counter() - started
        model_note += f", backbone {backbone_identity(trained.task.config.backbone)}"
        started = time.perf_counter()
        split_text("Warm up.")  # imports NLTK and builds the tokenisers, once per process
        setup_seconds = time.perf_counter() - started
        rows = []
        for _ in range(args.repeats):
            trained.bilm.type_cache.clear()  # every repeat starts cold, as a new process would
            t0 = time.perf_counter()
            sentences = read_sentences(document, "text")
            t1 = time.perf_counter()
            split = trained.task.unlabelled(sentences)
            predictions = trained.predict_split(split)
            t2 = time.perf_counter()
            write_jsonl(work / "document.jsonl", trained.task.records(split, predictions))
            t3 = time.perf_counter()
            rows.append((t1 - t0, t2 - t1, t3 - t2))
        tokens = sum(len(s.tokens) for s in sentences)
        tokenise, model, output = (statistics.median(r[i] for r in rows) for i in range(3))
        total = tokenise + model + output
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        cli = ["elmo-tasks", "predict", str(run), "--input", str(document), "--output", str(work / "cli.jsonl")]
        cli_runs = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            subprocess.run(cli, check=True, env=env, capture_output=True)
            cli_runs.append(time.perf_counter() - started)
        cli_seconds = statistics.median(cli_runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()[0]

    table = "\n".join(
        [
            "| stage | seconds | share | tokens / s |",
            "|---|---:|---:|---:|",
            f"| read + split into sentences + tokenise (data/tokenize.py) | {tokenise:.2f} | "
            f"{100 * tokenise / total:.1f} % | {tokens / tokenise:,.0f} |",
            f"| tensorise + backbone + NER head (batched, live features) | {model:.2f} | {100 * model / total:.1f} % | "
            f"{tokens / model:,.0f} |",
            f"| records + JSON lines | {output:.2f} | {100 * output / total:.1f} % | {tokens / output:,.0f} |",
            f"| **raw text -> JSON lines** | **{total:.2f}** | 100 % | **{tokens / total:,.0f}** |",
            f"| loading the run (once per process) | {load_seconds:.2f} | | |",
            f"| importing NLTK, building the tokenisers (once per process) | {setup_seconds:.2f} | | |",
            f"| `elmo-tasks predict` as a command (start-up and loading included) | {cli_seconds:.2f} | | "
            f"{tokens / cli_seconds:,.0f} |",
        ]
    )
    body = f"""## Prediction throughput on raw text (`benchmarks/predict_text_speed.py`)

Command: `{command_line()}` (revision {git_revision()}). CPU (lscpu): {cpu_model()}. Machine: {machine()}.
{args.threads} torch threads; median of {args.repeats} runs, each with a cold type cache (the backbone's
char-CNN vectors of distinct words); the command's row is the median of {args.repeats} runs too. Load average
(1 min) {load_before:.2f} before, {load_after:.2f} after: on this 2-core machine anything else running
slows 2-thread torch down several times (OpenMP threads spin-wait for the busy core).

Document: CoNLL-2003 dev + test as running text ({len(text):,} characters, {len(gold):,} CoNLL tokens;
our tokeniser makes {tokens:,} tokens in {len(sentences):,} sentences). Model: {model_note}.

{table}
"""
    print(body)
    if not args.no_write:
        write_section(DOCS / "benchmarks.md", args.section, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
