"""Data-parallel pretraining under torchrun (2 ranks, gloo): equal to one process with the same
global batch, resumable after ``kill -9`` and across world sizes, and a rank that dies stops the run
with a readable message and a rerun resumes.

torchrun is launched as ``python -m torch.distributed.run`` with this interpreter (whatever PATH
says). Every run is tiny: the cost is the 7 launches (10-20 s each on the busy 2-core machine this
was written on; about 80 s of CPU time for the file).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from elmo_core import batch_to_ids, load_bilm
from elmo_core.distributed import Ranks
from elmo_core.errors import BackboneUsageError, ProcessGroupError
from elmo_core.pretrain import BiLmLanguageModel, Position, Pretrainer, load_pretrain_config, word_id_batch
from elmo_core.vocab import Vocabulary
from helpers import REPO

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with gloo is unavailable, so torchrun cannot run",
)

CONFIG = REPO / "configs" / "bilm_tiny.yaml"
WORDS = [f"w{i}" for i in range(60)]
# Small batches (some hold one long sentence: a rank gets an empty share) and softmax clusters
# whose tails many batches, and many ranks' shares, never reach (their parameters get no gradient).
SETTINGS = {
    "cutoffs": [10, 30],
    "batch_tokens": 80,
    "buffer_sentences": 300,
    "eval_every": 4,
    "checkpoint_every": 2,
    "heldout_sentences": 20,
}
EXACT = {**SETTINGS, "dropout": 0.0}  # dropout masks are drawn per rank: one process cannot draw the same ones
SHORT, LONG = 700, 1300  # token budgets: 14 and 27 steps


def write_corpus(path: Path, n: int, seed: int) -> Path:
    """Words with Zipf-like frequencies (1 / rank^2); one sentence in eight is long enough to fill a batch alone."""
    rng = random.Random(seed)
    weights = [1 / (i + 1) ** 2 for i in range(len(WORDS))]
    lines = []
    for _ in range(n):
        length = rng.randint(40, 44) if rng.random() < 0.125 else rng.randint(3, 12)
        lines.append(" ".join(rng.choices(WORDS, weights, k=length)))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("corpus")
    return write_corpus(root / "train.txt", 300, seed=0), write_corpus(root / "heldout.txt", 20, seed=1)


def one_process(corpus, out: Path, budget: int, settings: dict = EXACT, log=None) -> dict:
    config = load_pretrain_config(CONFIG, {**settings, "max_tokens_seen": budget})
    return Pretrainer(config, *corpus, out, progress=False, log=log or (lambda line: None)).run()


def torchrun_command(corpus, out: Path, budget: int, settings: dict = EXACT) -> list[str]:
    sets = [x for key, value in {**settings, "max_tokens_seen": budget}.items() for x in ("--set", f"{key}={value}")]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "tasks.cli",
        "pretrain",
        "--config",
        str(CONFIG),
        "--train",
        str(corpus[0]),
        "--heldout",
        str(corpus[1]),
        "--out",
        str(out),
        "--quiet",
        *sets,
    ]


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def torchrun(corpus, out: Path, budget: int, settings: dict = EXACT) -> subprocess.CompletedProcess:
    return subprocess.run(
        torchrun_command(corpus, out, budget, settings),
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )


@contextlib.contextmanager
def background_torchrun(corpus, out: Path, budget: int, settings: dict) -> Iterator[subprocess.Popen]:
    """torchrun in the background, in a session of its own (a ``killpg`` reaches nothing of
    pytest's), its output in ``OUT.stdout`` / ``OUT.stderr``; killed on the way out if still
    running (its workers follow it within a second)."""
    with open(out.parent / f"{out.name}.stdout", "w") as stdout, open(out.parent / f"{out.name}.stderr", "w") as stderr:
        process = subprocess.Popen(
            torchrun_command(corpus, out, budget, settings),
            cwd=REPO,
            env=subprocess_env(),
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for_checkpoint(out: Path, process: subprocess.Popen, after_step: int = 0, seconds: float = 120) -> None:
    """Until ``out`` holds a checkpoint of a step after ``after_step`` (written atomically: safe to read)."""
    deadline = time.time() + seconds
    while not ((out / "checkpoint.pt").is_file() and checkpoint(out)["position"]["step"] > after_step):
        assert process.poll() is None, (out.parent / f"{out.name}.stderr").read_text()[-3000:]
        assert time.time() < deadline, f"no checkpoint after step {after_step}"
        time.sleep(0.05)


def checkpoint(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", weights_only=True)


def largest_difference(a: Path, b: Path) -> float:
    first, second = checkpoint(a)["model"], checkpoint(b)["model"]
    assert first.keys() == second.keys()
    return max(float((first[k] - second[k]).abs().max()) for k in first)


def bitwise_equal(a: Path, b: Path) -> bool:
    first, second = checkpoint(a)["model"], checkpoint(b)["model"]
    return all(torch.equal(first[k], second[k]) for k in first)


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory) -> dict[str, Path]:
    """One process and two ranks with the same global batches, to SHORT tokens; one process to LONG."""
    root = tmp_path_factory.mktemp("runs")
    one_process(corpus, root / "one", SHORT)
    one_process(corpus, root / "one_long", LONG)
    done = torchrun(corpus, root / "two", SHORT)
    assert done.returncode == 0, done.stderr[-3000:]
    (root / "two.stdout").write_text(done.stdout)
    return {"root": root, "one": root / "one", "two": root / "two", "one_long": root / "one_long"}


def test_the_corpus_makes_empty_shares_and_idle_clusters(corpus):
    """The runs below meet what data parallelism must get right: a batch of one sentence (rank 1
    has nothing), and softmax tails that no target of the batch, or of one rank's share, reaches."""
    config = load_pretrain_config(CONFIG, {**EXACT, "max_tokens_seen": SHORT})
    trainer = Pretrainer(config, *corpus, Path("unused"), progress=False)
    vocab = Vocabulary.build((s for _, s in trainer.train_corpus.iter_sentences(60)), 1, 2000)
    model = BiLmLanguageModel.from_config(config, len(vocab))
    batches, tokens = [], 0
    for batch in trainer._batches(Position(buffer_rng_state=random.Random(config.seed).getstate())):
        batches.append(batch)
        tokens += sum(len(s) for s in batch)
        if tokens >= SHORT:
            break

    def idle(sentences) -> int:
        return len(model.idle_parameters(word_id_batch(sentences, vocab)))

    assert len(batches) >= 4 and any(len(b) == 1 for b in batches)
    assert any(idle(b) for b in batches)
    assert any(idle(b[1::2]) > idle(b) for b in batches if len(b) > 1)  # idle on rank 1 only


def test_two_ranks_equal_one_process_with_the_same_global_batch(runs):
    """dropout 0: masks are drawn per rank, so no single process can draw the same ones."""
    one, two = runs["one"], runs["two"]
    assert checkpoint(two)["position"]["step"] == checkpoint(one)["position"]["step"] >= 4
    assert largest_difference(one, two) <= 1e-5
    assert json.loads((two / "result.json").read_text())["world_size"] == 2
    assert json.loads((one / "result.json").read_text())["world_size"] == 1
    assert checkpoint(two)["world_size"] == 2 and len(checkpoint(two)["dropout_rng"]) == 2
    for name in ("checkpoint.pt", "log.csv", "config.json", "vocab.txt", "options.json", "weights.hdf5"):
        assert (two / name).is_file(), name
    assert [r.split(",")[:2] for r in (two / "log.csv").read_text().splitlines()] == [
        r.split(",")[:2] for r in (one / "log.csv").read_text().splitlines()
    ]
    assert (runs["root"] / "two.stdout").read_text().count("heldout perplexity") == 1  # rank 0 reports
    ids = batch_to_ids([["w0", "w1", "w17", "w45"], ["w3"]])
    exported = [load_bilm(options=d / "options.json", weights=d / "weights.hdf5") for d in (one, two)]
    with torch.no_grad():
        assert (exported[0](ids).layers - exported[1](ids).layers).abs().max() <= 1e-5


def test_a_checkpoint_resumes_with_another_number_of_processes(runs, corpus, tmp_path):
    """The batch stream does not depend on the number of processes, so 1 -> 2 and 2 -> 1 both
    continue exactly (dropout 0) and end where one uninterrupted process ends."""
    one_to_two, two_to_one = tmp_path / "one_to_two", tmp_path / "two_to_one"
    shutil.copytree(runs["one"], one_to_two)
    shutil.copytree(runs["two"], two_to_one)
    done = torchrun(corpus, one_to_two, LONG)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "written by 1 process(es), resumed by 2" in done.stderr
    lines: list[str] = []
    one_process(corpus, two_to_one, LONG, log=lines.append)
    assert any("written by 2 process(es), resumed by 1" in line for line in lines)
    for resumed in (one_to_two, two_to_one):
        assert checkpoint(resumed)["position"]["step"] == checkpoint(runs["one_long"])["position"]["step"]
        assert largest_difference(resumed, runs["one_long"]) <= 1e-5


def test_a_checkpoint_of_another_config_is_refused_by_every_rank(runs, corpus, tmp_path):
    out = tmp_path / "two"
    shutil.copytree(runs["two"], out)
    before = (out / "checkpoint.pt").read_bytes()
    done = torchrun(corpus, out, LONG, {**EXACT, "lr": 0.5})
    assert done.returncode != 0
    assert "elmo-tasks pretrain: error: " in done.stderr and "differs in: lr" in done.stderr
    assert "rank 1 of 2: rank 0 stopped before training" in done.stderr  # not a timeout
    assert "elmo_core/" not in done.stderr  # no traceback through our code (torchrun prints its own)
    assert (out / "checkpoint.pt").read_bytes() == before


# -- failures: kill -9 of everything, one rank that dies ------------------------------------------
RANDOM = {**SETTINGS, "dropout": 0.1, "softmax": "sampled", "negative_samples": 8, "eval_every": 20}
# The interrupted runs get the final budget too (a run killed late cannot overshoot it), and it is
# long enough (44 steps) that they are still training when their torchrun is killed, and for the
# quarter second the workers take to notice.
CHAIN = 2200


def workers(parent: int) -> dict[int, int]:
    """torchrun's workers under PID ``parent``: rank -> PID (Linux: /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent_pid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environment = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        ranks = [v for v in environment if v.startswith(b"RANK=")]
        if parent_pid == parent and ranks:
            found[int(ranks[0][5:])] = int(entry.name)
    return found


def wait_until_gone(pids, seconds: float) -> float:
    """Seconds until every PID has exited (a test fails after ``seconds``)."""
    started = time.time()
    while any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in pids):
        assert time.time() - started < seconds, f"still running after {seconds} s: {pids}"
        time.sleep(0.05)
    return time.time() - started


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


needs_proc = pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="finds torchrun's workers in /proc")


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    done = torchrun(corpus, out, CHAIN, RANDOM)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@needs_proc
def test_a_dying_rank_and_kill_9_of_torchrun_stop_the_run_and_reruns_resume_exactly(corpus, uninterrupted, tmp_path):
    """Two interruptions of one run, then a rerun that ends bitwise equal to an uninterrupted one
    (same ranks, same dropout streams, same sums): rank 1 is killed, then torchrun with ``kill -9``
    of its process group. torchrun starts its workers in sessions of their own, so that kill does
    not reach them: they must notice torchrun's death and stop, or they would train on."""
    out = tmp_path / "run"
    stderr = tmp_path / "run.stderr"
    with background_torchrun(corpus, out, CHAIN, RANDOM) as process:
        wait_for_checkpoint(out, process)
        killed = time.time()
        os.kill(workers(process.pid)[1], signal.SIGKILL)
        assert process.wait(timeout=60) != 0
        assert time.time() - killed < 30  # gloo sees the closed connection, torchrun stops the survivor
    text = stderr.read_text()
    assert "rank 0 of 2: lost the connection to rank 1" in text or "rank 0 of 2: stopped by SIGTERM" in text
    assert "Run the same command again to resume" in text
    assert "rank      : 1 (local_rank: 1)" in text and "exitcode  : -9" in text  # torchrun's summary
    first = checkpoint(out)["position"]["step"]

    with background_torchrun(corpus, out, CHAIN, RANDOM) as process:  # resumes, and is killed -9 with its group
        wait_for_checkpoint(out, process, after_step=first)
        ranks = workers(process.pid)
        assert sorted(ranks) == [0, 1]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert wait_until_gone(ranks.values(), 15) < 10
    assert f"torchrun (PID {process.pid}) is gone, so this rank stops too" in stderr.read_text()
    second = checkpoint(out)["position"]["step"]
    assert first < second < checkpoint(uninterrupted)["position"]["step"] and not (out / "weights.hdf5").exists()

    done = torchrun(corpus, out, CHAIN, RANDOM)
    assert done.returncode == 0, done.stderr[-3000:]
    assert checkpoint(out)["position"]["step"] == checkpoint(uninterrupted)["position"]["step"]
    assert bitwise_equal(out, uninterrupted)
    assert json.loads((out / "result.json").read_text())["world_size"] == 2


# -- in one process ---------------------------------------------------------------------------------
def test_collective_failures_become_one_readable_error():
    ranks = Ranks(rank=0, world=2, timeout_minutes=30)
    closed = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer")
    timed_out = RuntimeError("[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting")
    for error, expected in ((closed, "lost the connection to rank 1"), (timed_out, "rank 1 did not answer within")):
        with pytest.raises(ProcessGroupError, match=f"rank 0 of 2: {expected}.*at step 3"):
            with ranks.guard(lambda: "at step 3"):
                raise error
    with pytest.raises(RuntimeError, match="shape mismatch"):  # not a collective: a bug keeps its traceback
        with ranks.guard(lambda: "at step 3"):
            raise RuntimeError("shape mismatch")


def test_evaluate_only_runs_in_one_process(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    config = load_pretrain_config(CONFIG, EXACT)
    with pytest.raises(BackboneUsageError, match="without torchrun"):
        Pretrainer(config, *corpus, tmp_path / "run", progress=False).evaluate_full_heldout()
