"""Peak memory and speed of building a feature store (elmo_core/store.py), and of reading it back.

Embeds ``--tokens`` tokens (default 1,000,000) of CoNLL-2003 text, read at run time from
``../shared/data/conll2003/eng.train`` and repeated with variations (each repetition shuffles a
sentence's words and marks its first word, so every sentence is new to the store), with a random
biLM written in the official layout. The default ``wide`` model has 512-dim outputs (3 layers, so
3 KiB per token in float16) and a cheap LSTM, so 1M tokens make a 3 GiB store: anything that kept
the features in memory would show in the RSS at once.

Reports the peak RSS (``getrusage`` ``ru_maxrss`` and ``VmRSS`` / ``RssAnon`` sampled from
``/proc/self/status`` every 20 ms), the RSS over the course of the build, and tokens/s; prints the
command and the machine, and appends a section to ``docs/store.md`` (``--no-docs`` to skip).

    OMP_NUM_THREADS=1 python benchmarks/store_memory.py --tokens 200000
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import random
import resource
import shlex
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from elmo_core import load_bilm
from elmo_core.random_model import TINY_OPTIONS, write_random_model
from elmo_core.store import FeatureStore, build_store, layers_for_batch

REPO = Path(__file__).resolve().parents[1]
CONLL = REPO.parent / "shared" / "data" / "conll2003" / "eng.train"
MODELS = {
    "tiny": TINY_OPTIONS,  # the test model: 48-dim features
    "wide": {
        **TINY_OPTIONS,  # 512-dim features, LSTM cheap enough for 1M tokens on one core
        "lstm": {**TINY_OPTIONS["lstm"], "projection_dim": 256, "dim": 256},
        "char_cnn": {**TINY_OPTIONS["char_cnn"], "filters": [[1, 32], [2, 32], [3, 64], [4, 128]]},
    },
}


class RssSampler:
    """Samples ``VmRSS`` and ``RssAnon`` (kB) of this process in a background thread."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.samples: list[tuple[float, int, int]] = []  # (seconds, VmRSS kB, RssAnon kB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def read() -> tuple[int, int]:
        fields = {}
        with open("/proc/self/status") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                fields[name] = value
        return int(fields["VmRSS"].split()[0]), int(fields["RssAnon"].split()[0])

    def _run(self) -> None:
        start = time.perf_counter()
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - start, *self.read()))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self) -> tuple[int, int]:
        return max(s[1] for s in self.samples), max(s[2] for s in self.samples)

    def at_fractions(self, fractions=(0.1, 0.5, 0.9)) -> list[int]:
        """VmRSS at these fractions of the sampled time: flat if memory is bounded."""
        end = self.samples[-1][0]
        return [next(s[1] for s in self.samples if s[0] >= f * end) for f in fractions]


def conll_sentences() -> list[list[str]]:
    sentences, current = [], []
    with CONLL.open(encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if not fields:
                if current:
                    sentences.append(current)
                current = []
            elif fields[0] != "-DOCSTART-":
                current.append(fields[0])
    return sentences


def varied_text(n_tokens: int, seed: int = 0) -> list[list[str]]:
    """At least ``n_tokens`` tokens: CoNLL sentences, then shuffled-and-marked repetitions of them."""
    base = conll_sentences()
    rng = random.Random(seed)
    out, total, repetition = [], 0, 0
    while total < n_tokens:
        for tokens in base:
            if repetition:
                tokens = rng.sample(tokens, len(tokens))
                tokens[0] = f"{tokens[0]}~{repetition}"
            out.append(tokens)
            total += len(tokens)
            if total >= n_tokens:
                break
        repetition += 1
    return out


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    memory = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    load = os.getloadavg()[0]
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory / 2**20:.0f} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, torch {torch.__version__} with {torch.get_num_threads()} thread(s), "
        f"load average {load:.1f} at start"
    )


def read_back(store: FeatureStore, sentences: list[list[str]], batch: int = 32) -> float:
    """Seconds to read every sentence back as padded float32 batches, as task training does."""
    started = time.perf_counter()
    for start in range(0, len(sentences), batch):
        layers_for_batch(store, sentences[start : start + batch])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--model", choices=sorted(MODELS), default="wide")
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    parser.add_argument("--batch-tokens", type=int, default=4000)
    parser.add_argument("--dir", type=Path, help="store directory (default: a temporary one, deleted afterwards)")
    parser.add_argument("--no-read", action="store_true", help="skip the read-back pass")
    parser.add_argument("--no-docs", action="store_true", help="do not append the result to docs/store.md")
    args = parser.parse_args()
    settings = {
        name: value
        for name, value in sorted(os.environ.items())
        if name == "OMP_NUM_THREADS" or name.startswith(("MALLOC_", "GLIBC_TUNABLES"))
    }
    command = " ".join(
        [
            *(f"{name}={value}" for name, value in settings.items()),
            "python",
            shlex.join([os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]]),
        ]
    )
    machine_line = machine()
    print(f"command: {command}\nmachine: {machine_line}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="store-bench-"))
    directory = args.dir or work / "store"
    try:
        options, weights = write_random_model(work / "model", copy.deepcopy(MODELS[args.model]))
        bilm = load_bilm(options=options, weights=weights)
        sentences = varied_text(args.tokens)
        n_tokens = sum(len(s) for s in sentences)
        baseline = RssSampler.read()
        with RssSampler() as build_rss:
            report = build_store(
                directory, bilm, args.model, sentences, dtype=args.dtype, batch_tokens=args.batch_tokens, progress=False
            )
        build_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
        store = FeatureStore(directory, args.model)
        lines = [
            f"- {len(sentences):,} sentences, {n_tokens:,} tokens; model `{args.model}` ({bilm.num_layers} layers x "
            f"{bilm.output_dim} dims), {args.dtype}: store {size / 2**30:.2f} GiB in {report.chunks_written} chunks",
            f"- build: {report.seconds:.1f} s, **{report.tokens_embedded / report.seconds:,.0f} tokens/s**",
            f"- RSS before the build (model + text in memory): {baseline[0] / 1024:.0f} MiB "
            f"(anonymous {baseline[1] / 1024:.0f} MiB)",
            f"- **peak RSS during the build: {build_rss.peak()[0] / 1024:.0f} MiB** (sampled VmRSS; anonymous "
            f"{build_rss.peak()[1] / 1024:.0f} MiB); ru_maxrss {build_maxrss / 1024:.0f} MiB; VmRSS at 10/50/90% "
            f"of the build: {' / '.join(f'{v / 1024:.0f}' for v in build_rss.at_fractions())} MiB",
        ]
        if not args.no_read:
            with RssSampler() as read_rss:
                seconds = read_back(store, sentences)
            lines.append(
                f"- read back as padded float32 batches of 32: {n_tokens / seconds:,.0f} tokens/s; peak "
                f"VmRSS {read_rss.peak()[0] / 1024:.0f} MiB, of which anonymous {read_rss.peak()[1] / 1024:.0f}"
                f" MiB (the rest is page cache of the memory-mapped chunks, shared and reclaimable)"
            )
        print("\n".join(lines))
        if not args.no_docs:
            stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
            section = (
                f"\n### store_memory.py, {stamp}\n\n`{command}`\n\nMachine: {machine_line}\n\n"
                + "\n".join(lines)
                + "\n"
            )
            with (REPO / "docs" / "store.md").open("a", encoding="utf-8") as handle:
                handle.write(section)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
