"""The on-disk feature store: right vectors, never stale ones, crash safety under a real SIGKILL,
resumption without recomputation, and torchrun sharding equal to one process (bitwise)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from elmo_core import batch_to_ids, load_bilm
from elmo_core.embed import plan_embedding_batches
from elmo_core.errors import BackboneUsageError, DirectoryBusyError
from elmo_core.loading import model_identity
from elmo_core.store import (
    FeatureStore,
    FeatureStoreError,
    ShardWriter,
    build_store,
    compact_index,
    distinct_sentences,
    layers_for_batch,
    read_index,
)
from helpers import REPO, write_random_model
from tasks.cli import main

MODEL_ID = "tiny-test-model"


def synthetic_sentences(n: int, seed: int = 0) -> list[list[str]]:
    """``n`` sentences of 1-12 made-up words (plus one exact duplicate, stored once)."""
    rng = random.Random(seed)
    vocabulary = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyzAB.,'") for _ in range(rng.randint(1, 9))) for _ in range(300)
    ]
    distinct: dict[tuple[str, ...], None] = {}
    while len(distinct) < n:
        distinct[tuple(rng.choice(vocabulary) for _ in range(rng.randint(1, 12)))] = None
    sentences = [list(s) for s in distinct]
    return sentences + [list(sentences[0])]


@pytest.fixture
def single_thread():
    # Bitwise comparisons with subprocesses (OMP_NUM_THREADS=1) need the same thread count here.
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def tiny_bilm(tiny_model):
    return load_bilm(options=tiny_model[0], weights=tiny_model[1])


def contents(store: FeatureStore) -> dict[str, bytes]:
    """key -> the exact bytes of its (layers, tokens, dim) array."""
    return {key: np.ascontiguousarray(store.get_by_key(key)).tobytes() for key in store.keys()}


def chunk_fingerprints(directory: Path) -> dict[str, tuple[int, str]]:
    """chunk name -> (inode, sha256): proves a chunk was neither rewritten nor replaced."""
    return {
        p.name: (p.stat().st_ino, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in (directory / "chunks").glob("*.npy")
    }


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


# ---------------------------------------------------------------- contents and API


def test_store_returns_the_bilm_vectors(tiny_bilm, tmp_path):
    sentences = synthetic_sentences(40)
    store32 = FeatureStore.build(
        tmp_path / "f32",
        tiny_bilm,
        MODEL_ID,
        sentences,
        dtype="float32",
        batch_tokens=50,
        chunk_tokens=64,
        progress=False,
    )
    store16 = FeatureStore.build(
        tmp_path / "f16", tiny_bilm, MODEL_ID, sentences, batch_tokens=50, chunk_tokens=64, progress=False
    )
    with torch.no_grad():
        expected = tiny_bilm(batch_to_ids(sentences))  # one batch: other batching than the store's
    assert len(store32) == len(store16) == len(sentences) - 1  # the duplicate is stored once
    assert (store16.num_layers, store16.dim) == (3, 16)
    for row, tokens in enumerate(sentences):
        reference = expected.layers[:, row, : len(tokens)].numpy()
        got32, got16 = store32.get(tokens), store16.get(tokens)
        assert got32.shape == got16.shape == (3, len(tokens), 16)
        assert got32.dtype == np.float32 and got16.dtype == np.float16
        assert np.allclose(got32, reference, atol=1e-5)
        assert np.allclose(got16.astype(np.float32), reference, rtol=1e-3, atol=1e-3)
        assert not got16.flags.writeable  # a view into the memory map, not a copy
    # Memory stays bounded: no chunk is bigger than its buffer or one batch.
    for path in (tmp_path / "f16" / "chunks").glob("*.npy"):
        assert np.load(path, mmap_mode="r").shape[0] <= 64 + 50
    assert store16.build_report.chunks_written > 3


def test_layers_for_batch_is_a_forward_pass_read_from_disk(tiny_bilm, tmp_path):
    sentences = synthetic_sentences(12)
    store = FeatureStore.build(tmp_path / "s", tiny_bilm, MODEL_ID, sentences, dtype="float32", progress=False)
    batch = [sentences[3], sentences[0], sentences[7]]
    layers, mask = layers_for_batch(store, batch)
    with torch.no_grad():
        expected = tiny_bilm(batch_to_ids(batch))
    assert layers.dtype == torch.float32 and mask.dtype == torch.bool
    assert layers.shape == expected.layers.shape and torch.equal(mask, expected.mask)
    assert torch.allclose(layers, expected.layers, atol=1e-5)
    assert float(layers[:, ~mask].abs().max()) == 0.0  # padding is zero, as the biLM gives it
    with pytest.raises(KeyError, match="1 of 2 sentences are not in the feature store"):
        layers_for_batch(store, [sentences[0], ["never", "stored"]])


def test_changed_model_or_text_is_never_served(tiny_bilm, tmp_path):
    sentences = synthetic_sentences(10)
    FeatureStore.build(tmp_path / "s", tiny_bilm, MODEL_ID, sentences, progress=False)
    store = FeatureStore(tmp_path / "s", MODEL_ID)
    edited = sentences[2][:-1] + [sentences[2][-1] + "x"]
    assert store.contains(sentences[2]) and not store.contains(edited)
    with pytest.raises(KeyError):
        store.get(edited)
    with pytest.raises(FeatureStoreError, match="not of model other-model"):
        FeatureStore(tmp_path / "s", "other-model")
    other_options, other_weights = write_random_model(tmp_path / "other", seed=1)
    other = load_bilm(options=other_options, weights=other_weights)
    with pytest.raises(FeatureStoreError, match="holds features of model"):
        build_store(tmp_path / "s", other, "other-model", sentences, progress=False)
    with pytest.raises(FeatureStoreError, match="float32"):  # neither may the dtype change
        build_store(tmp_path / "s", tiny_bilm, MODEL_ID, sentences, dtype="float32", progress=False)
    with pytest.raises(FeatureStoreError, match="not a feature store"):
        FeatureStore(tmp_path / "other")


def test_rebuild_recomputes_nothing_and_new_sentences_are_added(tiny_bilm, tmp_path, single_thread):
    sentences = synthetic_sentences(30)
    first = build_store(tmp_path / "s", tiny_bilm, MODEL_ID, sentences, batch_tokens=40, progress=False)
    before = chunk_fingerprints(tmp_path / "s")
    again = build_store(tmp_path / "s", tiny_bilm, MODEL_ID, sentences, batch_tokens=40, progress=False)
    assert first.embedded == len(sentences) - 1 and first.batches_run > 1
    assert (again.embedded, again.batches_run, again.already_stored) == (0, 0, len(sentences) - 1)
    assert chunk_fingerprints(tmp_path / "s") == before
    more = sentences + synthetic_sentences(5, seed=9)
    added = build_store(tmp_path / "s", tiny_bilm, MODEL_ID, more, batch_tokens=40, progress=False)
    assert added.embedded == 5 and len(FeatureStore(tmp_path / "s")) == len(sentences) + 4


def test_vectors_do_not_depend_on_what_the_bilm_ran_before(tiny_model, tiny_bilm, tmp_path, single_thread):
    """A warm type cache holds layer-0 vectors computed in other batches, which differ in the last
    bits; building ignores it, or a resumed build could not equal a one-shot build bitwise."""
    sentences = synthetic_sentences(300)
    with torch.no_grad():
        tiny_bilm(batch_to_ids(sentences))  # fills the type cache from one big batch
    assert len(tiny_bilm.type_cache) > 0
    warm = build_store(tmp_path / "warm", tiny_bilm, MODEL_ID, sentences, batch_tokens=40, progress=False)
    assert tiny_bilm.type_cache.max_size > 0  # the cache is back on afterwards
    fresh = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    build_store(tmp_path / "fresh", fresh, MODEL_ID, sentences, batch_tokens=40, progress=False)
    assert warm.embedded == len(sentences) - 1
    assert contents(FeatureStore(tmp_path / "warm")) == contents(FeatureStore(tmp_path / "fresh"))


def test_building_never_packs_rows(tiny_model, tmp_path, single_thread, monkeypatch):
    """A large LSTM packs a window's sentences into shared rows (row_packing.py), whose makeup moves
    the vectors by rounding; building turns that off (a resumed build's windows hold other batches),
    so a store of a model forced to pack equals one of a model that never packs, bit for bit."""
    import elmo_core.bilm as bilm_module

    calls = []
    real = bilm_module.pack_rows
    monkeypatch.setattr(bilm_module, "pack_rows", lambda *a, **k: calls.append(1) or real(*a, **k))
    sentences = synthetic_sentences(60)
    packing = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    packing.pack_sentences = True
    build_store(tmp_path / "packing", packing, MODEL_ID, sentences, batch_tokens=40, progress=False)
    assert calls == [] and packing.pack_sentences is True  # restored afterwards
    plain = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    plain.pack_sentences = False
    build_store(tmp_path / "plain", plain, MODEL_ID, sentences, batch_tokens=40, progress=False)
    assert contents(FeatureStore(tmp_path / "packing")) == contents(FeatureStore(tmp_path / "plain"))
    with torch.no_grad():
        packing(batch_to_ids(sentences[:5]))
    assert calls  # outside a build the forced model does pack


# ---------------------------------------------------------------- crash safety


def test_leftovers_of_a_crash_are_invisible_then_cleaned(tiny_bilm, tmp_path):
    sentences = synthetic_sentences(20)
    directory = tmp_path / "s"
    build_store(directory, tiny_bilm, MODEL_ID, sentences[:10], compact=False, progress=False)
    reference = contents(FeatureStore(directory))
    chunks = directory / "chunks"
    # What a kill -9 can leave: a half-written temp chunk, a complete chunk whose keys were never
    # committed (with a key that must stay invisible), and a half-written temp keys file.
    (chunks / "r0-000007.npy.999.tmp").write_bytes(b"\x93NUMPY half a header")
    np.save(chunks / "r0-000008.npy", np.ones((4, 3, 16), np.float16))
    (chunks / "r0-000008.keys.999.tmp").write_text(f"{FeatureStore(directory).key(sentences[15])}\t0\t")
    (directory / "index.tsv.999.tmp").write_text("garbage")
    store = FeatureStore(directory)
    assert contents(store) == reference and not store.contains(sentences[15])

    report = build_store(directory, tiny_bilm, MODEL_ID, sentences, progress=False)
    assert report.already_stored == 10
    names = sorted(p.name for p in chunks.iterdir())
    assert not [n for n in names if n.endswith(".tmp") or n == "r0-000008.npy"], names
    assert not list(directory.glob("*.tmp")) and not list(chunks.glob("*.keys"))  # compacted
    final = FeatureStore(directory)
    assert len(final) == len(sentences) - 1
    assert {k: final_bytes for k, final_bytes in contents(final).items() if k in reference} == reference


def test_a_second_writer_of_the_same_shard_waits_or_is_refused(tiny_bilm, tmp_path):
    sentences = synthetic_sentences(5)
    build_store(tmp_path / "s", tiny_bilm, MODEL_ID, sentences[:2], progress=False)
    info = FeatureStore(tmp_path / "s").info
    holder = ShardWriter(tmp_path / "s", "r0", info, chunk_tokens=10)
    lock = tmp_path / "s" / "locks" / "r0.lock"
    try:
        with pytest.raises(DirectoryBusyError, match=rf"{lock}: held by PID {os.getpid()} "):
            build_store(tmp_path / "s", tiny_bilm, MODEL_ID, sentences, progress=False, wait=False)
        build_store(tmp_path / "s", tiny_bilm, MODEL_ID, sentences, shard=(1, 2), progress=False)  # r1 is free
        # A build that waits reads the index once the holder is done: what the holder commits
        # meanwhile (here sentence 2, as zeros) is not embedded again.
        said, key = [], FeatureStore(tmp_path / "s").key(sentences[2])

        def commit_then_release():
            holder.add_batch([(key, np.zeros((info.num_layers, len(sentences[2]), info.dim), np.float16))])
            holder.close()

        threading.Timer(0.3, commit_then_release).start()
        report = build_store(tmp_path / "s", tiny_bilm, MODEL_ID, sentences, progress=False, log=said.append)
        assert said == [f"waiting for PID {os.getpid()} which holds {lock}"]
        assert report.already_stored == 3 and report.embedded == 2
        assert not FeatureStore(tmp_path / "s").get(sentences[2]).any()
    finally:
        holder.close()


CHILD_BUILD = """
import json, sys, time
import elmo_core.bilm as bilm_module
from elmo_core import load_bilm
from elmo_core.store import build_store

options, weights, store, sentences = sys.argv[1:5]
forward_many = bilm_module.ElmoBiLm.forward_many
def slow_forward_many(self, char_ids):
    time.sleep(0.03 * len(char_ids))  # per batch, so the parent can look at and kill a build in progress
    return forward_many(self, char_ids)
bilm_module.ElmoBiLm.forward_many = slow_forward_many
build_store(store, load_bilm(options=options, weights=weights), "tiny-test-model",
            json.loads(open(sentences).read()), batch_tokens=40, chunk_tokens=60, progress=False)
"""


def test_kill_9_mid_build_then_resume_equals_a_one_shot_build(tiny_model, tiny_bilm, tmp_path, single_thread):
    sentences = synthetic_sentences(400)
    one_shot = FeatureStore.build(
        tmp_path / "one-shot", tiny_bilm, MODEL_ID, sentences, batch_tokens=40, chunk_tokens=60, progress=False
    )
    reference = contents(one_shot)
    (tmp_path / "sentences.json").write_text(json.dumps(sentences))
    directory = tmp_path / "killed"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD_BUILD,
            str(tiny_model[0]),
            str(tiny_model[1]),
            str(directory),
            str(tmp_path / "sentences.json"),
        ],
        cwd=REPO,
        env=subprocess_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while len(list((directory / "chunks").glob("*.keys"))) < 4:
            assert child.poll() is None, "the build ended before it could be killed"
            assert time.monotonic() < deadline, "the build committed nothing within 60 s"
            time.sleep(0.01)
        while_writing = FeatureStore(directory, MODEL_ID)  # read while the child keeps writing
        assert all(
            np.ascontiguousarray(while_writing.get_by_key(k)).tobytes() == reference[k] for k in while_writing.keys()
        )
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL

    after_kill = FeatureStore(directory, MODEL_ID)
    stored = set(after_kill.keys())
    assert 4 <= len(stored) < len(reference)
    assert all(contents(after_kill)[k] == reference[k] for k in stored)  # complete entries only
    keys, unique = distinct_sentences(MODEL_ID, sentences)
    plan = plan_embedding_batches(unique, max_tokens=40)
    stored_per_batch = [sum(keys[i] in stored for i in batch) for batch in plan]
    assert all(n in (0, len(batch)) for n, batch in zip(stored_per_batch, plan))  # a batch commits whole
    committed_chunks = {
        name: print_
        for name, print_ in chunk_fingerprints(directory).items()
        if name in {e.chunk for e in read_index(directory).values()}
    }

    calls = []
    forward_many = tiny_bilm.forward_many  # forward() goes through it too
    tiny_bilm.forward_many = lambda batches: calls.extend(ids.shape[0] for ids in batches) or forward_many(batches)
    report = build_store(directory, tiny_bilm, MODEL_ID, sentences, batch_tokens=40, chunk_tokens=60, progress=False)
    assert report.already_stored == len(stored) and report.embedded == len(reference) - len(stored)
    assert len(calls) == report.batches_run == sum(n == 0 for n in stored_per_batch)
    assert sum(calls) == report.embedded  # no stored sentence went through the biLM again
    assert {n: p for n, p in chunk_fingerprints(directory).items() if n in committed_chunks} == committed_chunks
    assert contents(FeatureStore(directory, MODEL_ID)) == reference  # bitwise


def test_commits_by_time_change_where_entries_land_not_what_is_stored(tiny_bilm, tmp_path, monkeypatch):
    """With a chunk buffer far larger than the build, only the time bound commits: a fake clock that
    moves one second per reading makes a commit every few batches, and the store holds exactly what a
    build committed once at its end holds."""
    sentences = synthetic_sentences(80)
    by_size = build_store(tmp_path / "size", tiny_bilm, MODEL_ID, sentences, batch_tokens=30, progress=False)
    assert by_size.chunks_written == 1  # 64 MiB is far more than this build
    ticks = iter(range(10**6))
    monkeypatch.setattr("elmo_core.store._now", lambda: float(next(ticks)))
    by_time = build_store(
        tmp_path / "time", tiny_bilm, MODEL_ID, sentences, batch_tokens=30, progress=False, commit_seconds=2.5
    )
    assert by_time.batches_run == by_size.batches_run and by_time.chunks_written >= by_time.batches_run // 3
    assert contents(FeatureStore(tmp_path / "time")) == contents(FeatureStore(tmp_path / "size"))
    # Where commits fell is visible only in the index's chunk / row columns, never in keys or values.
    locations = read_index(tmp_path / "time")
    assert set(locations) == set(read_index(tmp_path / "size")) and len({e.chunk for e in locations.values()}) > 1
    with pytest.raises(BackboneUsageError, match="commit_seconds must be > 0"):
        build_store(tmp_path / "bad", tiny_bilm, MODEL_ID, sentences, progress=False, commit_seconds=0)
    assert not (tmp_path / "bad").exists()


CHILD_TIMED_BUILD = """
import json, sys, time
import elmo_core.bilm as bilm_module
from elmo_core import load_bilm
from elmo_core.store import build_store

options, weights, store, sentences = sys.argv[1:5]
forward_many = bilm_module.ElmoBiLm.forward_many
def slow_forward_many(self, char_ids):
    time.sleep(0.05 * len(char_ids))  # 0.05 s per batch
    return forward_many(self, char_ids)
bilm_module.ElmoBiLm.forward_many = slow_forward_many
build_store(store, load_bilm(options=options, weights=weights), "tiny-test-model",
            json.loads(open(sentences).read()), batch_tokens=40, commit_seconds=0.3, progress=False)
"""


def test_a_kill_loses_at_most_commit_seconds_of_work(tiny_model, tiny_bilm, tmp_path, single_thread):
    """A 64 MiB buffer never fills here, so before time-bounded commits a kill lost the whole build;
    with ``commit_seconds=0.3`` entries are committed while the build runs, and the resumed build
    equals a one-shot build bitwise."""
    sentences = synthetic_sentences(200)
    reference = contents(
        FeatureStore.build(tmp_path / "one-shot", tiny_bilm, MODEL_ID, sentences, batch_tokens=40, progress=False)
    )
    (tmp_path / "sentences.json").write_text(json.dumps(sentences))
    directory = tmp_path / "killed"
    argv = [str(tiny_model[0]), str(tiny_model[1]), str(directory), str(tmp_path / "sentences.json")]
    child = subprocess.Popen([sys.executable, "-c", CHILD_TIMED_BUILD, *argv], cwd=REPO, env=subprocess_env())
    try:
        deadline = time.monotonic() + 60
        while len(list((directory / "chunks").glob("*.keys"))) < 2:
            assert child.poll() is None, "the build ended before it could be killed"
            assert time.monotonic() < deadline, "the build committed nothing within 60 s"
            time.sleep(0.01)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    stored = len(FeatureStore(directory, MODEL_ID))
    assert 0 < stored < len(reference)
    report = build_store(directory, tiny_bilm, MODEL_ID, sentences, batch_tokens=40, progress=False)
    assert report.already_stored == stored
    assert contents(FeatureStore(directory, MODEL_ID)) == reference


# ---------------------------------------------------------------- shards and torchrun


def test_shards_built_separately_equal_one_build_bitwise(tiny_bilm, tmp_path):
    sentences = synthetic_sentences(60)
    one = FeatureStore.build(tmp_path / "one", tiny_bilm, MODEL_ID, sentences, batch_tokens=30, progress=False)
    reports = [
        build_store(
            tmp_path / "sharded", tiny_bilm, MODEL_ID, sentences, shard=(rank, 3), batch_tokens=30, progress=False
        )
        for rank in range(3)
    ]
    assert all(r.embedded > 0 for r in reports) and sum(r.embedded for r in reports) == len(one)
    assert not (tmp_path / "sharded" / "index.tsv").exists()  # shards only commit their own keys files
    assert contents(FeatureStore(tmp_path / "sharded")) == contents(one)
    assert compact_index(tmp_path / "sharded") == len(one)
    assert not list((tmp_path / "sharded" / "chunks").glob("*.keys"))
    assert contents(FeatureStore(tmp_path / "sharded")) == contents(one)


def embed_arguments(tiny_model, text: Path) -> list[str]:
    return [
        "embed",
        "--options",
        str(tiny_model[0]),
        "--weights",
        str(tiny_model[1]),
        "--input",
        str(text),
        "--batch-size",
        "4",
        "--quiet",
    ]


def test_cli_embed_store(tiny_model, tmp_path, capsys):
    sentences = synthetic_sentences(20)
    text = tmp_path / "in.txt"
    text.write_text("\n".join(" ".join(s) for s in sentences) + "\n", encoding="utf-8")
    args = embed_arguments(tiny_model, text)
    assert main(args + ["--store", str(tmp_path / "s"), "--store-dtype", "float32"]) == 0
    assert "20 distinct sentences x 3 layers x 16 dims (float32): 20 embedded" in capsys.readouterr().out
    store = FeatureStore(tmp_path / "s", model_identity(*tiny_model))
    assert store.dtype == np.float32 and all(store.contains(s) for s in sentences)
    assert main(args + ["--store", str(tmp_path / "s"), "--store-dtype", "float32"]) == 0
    assert "0 embedded, 20 already stored" in capsys.readouterr().out
    assert main(args + ["--store", str(tmp_path / "t"), "--stateful"]) == 2
    assert "--stateful cannot write a --store" in capsys.readouterr().err
    assert main(args + ["--store", str(tmp_path / "v"), "--commit-seconds", "0"]) == 2
    assert "--commit-seconds must be > 0" in capsys.readouterr().err and not (tmp_path / "v").exists()
    for bad in (args, args + ["--store", str(tmp_path / "u"), "--output", str(tmp_path / "o.hdf5")]):
        with pytest.raises(SystemExit) as exit_info:  # exactly one of --output / --store
            main(bad)
        assert exit_info.value.code == 2


def test_torchrun_two_processes_equal_one_process(tiny_model, tmp_path, single_thread):
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is unavailable, so torchrun cannot run")
    sentences = synthetic_sentences(60)
    text = tmp_path / "in.txt"
    text.write_text("\n".join(" ".join(s) for s in sentences) + "\n", encoding="utf-8")
    args = embed_arguments(tiny_model, text)
    assert main(args + ["--store", str(tmp_path / "one")]) == 0
    # `python -m torch.distributed.run` is torchrun, with this interpreter whatever PATH says.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--standalone",
            "-m",
            "tasks.cli",
            *args,
            "--store",
            str(tmp_path / "two"),
        ],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "60 distinct sentences" in done.stdout and "2 process(es)" in done.stdout
    two = tmp_path / "two"
    assert {p.name[:2] for p in (two / "chunks").glob("*.npy")} == {"r0", "r1"}  # each rank wrote its shard
    assert (two / "index.tsv").is_file() and not list((two / "chunks").glob("*.keys"))  # rank 0 merged
    assert contents(FeatureStore(two)) == contents(FeatureStore(tmp_path / "one"))
