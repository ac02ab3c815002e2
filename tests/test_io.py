"""elmo_core.io (atomic writes, file hashing), data.text (the line reader) and the two error roots."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from data.errors import DataError, DataFormatError, DataUsageError
from data.tags import TagSchemeError, normalize_scheme
from data.text import read_lines
from data.wordnet import WordNetNotFoundError
from elmo_core.errors import BackboneError, BackboneUsageError, ElmoFileError, ModelNotAvailableError
from elmo_core.io import (
    atomic_path,
    atomic_torch_save,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    file_sha256,
)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".part", ".tmp")))


# ---------------------------------------------------------------- atomic writes


def test_writers_produce_the_expected_bytes(tmp_path):
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\xffabc")
    atomic_write_text(tmp_path / "t.txt", "héllo\nwörld\n")
    value = {"b": [1, 2.5, None], "a": "ü", "nested": {"x": True}}
    atomic_write_json(tmp_path / "v.json", value)
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xffabc"
    assert (tmp_path / "t.txt").read_bytes() == "héllo\nwörld\n".encode()
    # byte for byte what the hand-written writers produced: json.dumps(indent=2) + newline
    assert (tmp_path / "v.json").read_text() == json.dumps(value, indent=2) + "\n"
    assert json.loads((tmp_path / "v.json").read_text()) == value
    assert leftovers(tmp_path) == []


def test_writers_replace_an_existing_file(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and leftovers(tmp_path) == []


def test_a_failing_writer_leaves_the_old_file_and_no_part_file(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old content")

    def half_then_crash(handle):
        handle.write(b"half of the new")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, half_then_crash)
    assert target.read_bytes() == b"old content"
    assert leftovers(tmp_path) == []


def test_a_failing_json_value_leaves_the_old_file(tmp_path):
    target = tmp_path / "v.json"
    atomic_write_json(target, {"ok": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"not serialisable": object()})
    assert json.loads(target.read_text()) == {"ok": 1} and leftovers(tmp_path) == []


def test_atomic_torch_save_round_trip_and_failure(tmp_path):
    target = tmp_path / "checkpoint.pt"
    atomic_torch_save({"step": 3, "w": torch.arange(4)}, target)
    loaded = torch.load(target, weights_only=True)
    assert loaded["step"] == 3 and torch.equal(loaded["w"], torch.arange(4))
    with pytest.raises((AttributeError, pickle.PicklingError)):
        atomic_torch_save({"unpicklable": lambda: None}, target)
    assert torch.load(target, weights_only=True)["step"] == 3
    assert leftovers(tmp_path) == []


def test_checkpoint_module_still_exports_atomic_torch_save():
    from elmo_core.checkpoint import atomic_torch_save as reexported

    assert reexported is atomic_torch_save


def test_atomic_path_for_writers_that_need_a_file_name(tmp_path):
    target = tmp_path / "x.hdf5"
    with atomic_path(target) as partial, h5py.File(partial, "w") as out:
        assert partial.name == "x.hdf5.part" and not target.exists()
        out["a"] = np.arange(3)
    with h5py.File(target) as handle:
        assert list(handle["a"][...]) == [0, 1, 2]
    with pytest.raises(KeyError):
        with atomic_path(target) as partial, h5py.File(partial, "w") as out:
            out["b"] = np.arange(2)
            raise KeyError("crash mid-write")
    with h5py.File(target) as handle:
        assert list(handle) == ["a"]
    assert leftovers(tmp_path) == []


def test_custom_temporary_suffix(tmp_path):
    seen = []
    atomic_write(tmp_path / "index.tsv", lambda h: seen.extend(p.name for p in tmp_path.iterdir()), suffix=".7.tmp")
    assert seen == ["index.tsv.7.tmp"] and (tmp_path / "index.tsv").exists() and leftovers(tmp_path) == []


def test_save_weights_is_atomic(tiny_model, tmp_path, monkeypatch):
    from elmo_core import load_bilm, save_weights

    options, weights = tiny_model
    before = weights.read_bytes()
    bilm = load_bilm(options=options, weights=weights)
    monkeypatch.setattr(bilm.char_cnn.projection, "bias", None)  # save_weights fails half-way through
    with pytest.raises(AttributeError):
        save_weights(bilm, weights)
    assert weights.read_bytes() == before and leftovers(weights.parent) == []


# ---------------------------------------------------------------- hashing


def test_file_sha256_matches_hashlib_whatever_the_chunk(tmp_path):
    data = bytes(range(256)) * 1000 + b"tail"
    path = tmp_path / "blob"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert file_sha256(path) == expected
    assert file_sha256(path, chunk=7) == expected
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert file_sha256(empty) == hashlib.sha256(b"").hexdigest()


def test_model_identity_is_unchanged(tiny_model):
    """Feature stores are keyed by it: it must stay the first 16 hex digits of SHA-256(options
    bytes + weights bytes), and the shipped model's id must stay what existing stores hold."""
    from elmo_core.loading import model_identity
    from elmo_core.models import packaged_model_files

    options, weights = tiny_model
    assert (
        model_identity(options, weights) == hashlib.sha256(options.read_bytes() + weights.read_bytes()).hexdigest()[:16]
    )
    shipped = packaged_model_files("default")
    if shipped is not None:
        assert model_identity(*shipped) == "afd0945ad1e4ea04"  # v2, shipped since session 9
    first = Path(__file__).resolve().parent / "golden" / "backbone_v1" / "default"  # v1: what older stores hold
    assert model_identity(first / "options.json", first / "weights.hdf5") == "327698d38dab027d"


# ---------------------------------------------------------------- the line reader


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_read_lines_numbers_and_line_ends(tmp_path):
    path = write(tmp_path / "a.txt", b"\xef\xbb\xbffirst\r\nsecond\n\nfourth \xc2\x85 still fourth\nlast\r")
    assert list(read_lines(path)) == [
        (1, "first"),
        (2, "second"),
        (3, ""),
        (4, "fourth \x85 still fourth"),
        (5, "last"),
    ]
    assert list(read_lines(write(tmp_path / "e.txt", b""))) == []
    assert list(read_lines(write(tmp_path / "n.txt", b"a\n"))) == [(1, "a")]


@pytest.mark.parametrize("suffix, compress", [(".gz", gzip.compress), (".xz", lzma.compress), (".bz2", bz2.compress)])
def test_read_lines_decompresses(tmp_path, suffix, compress):
    path = write(tmp_path / f"corpus.txt{suffix}", compress("ein Satz\nzwei Sätze\n".encode()))
    assert list(read_lines(path)) == [(1, "ein Satz"), (2, "zwei Sätze")]


def test_read_lines_reads_in_blocks_without_losing_count(tmp_path):
    lines = [f"line {i} é" * (i % 5 + 1) for i in range(500)]
    path = write(tmp_path / "big.txt", ("\n".join(lines) + "\n").encode("utf-8"))
    assert [text for _, text in read_lines(path, block_bytes=64)] == lines
    assert [number for number, _ in read_lines(path, block_bytes=64)] == list(range(1, 501))


def test_not_utf8_names_file_line_and_column(tmp_path):
    path = write(tmp_path / "bad.txt", b"fine\nalso fine\nGr\xfc\xdfe\n")
    with pytest.raises(DataFormatError) as caught:
        list(read_lines(path, block_bytes=8))  # the bad byte is not in the first block
    error = caught.value
    assert error.path == str(path) and error.line == 3
    assert str(error).startswith(f"{path}:3: not valid UTF-8: byte 0xfc at column 3")
    assert "must be UTF-8" in str(error)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataFormatError, match="file not found"):
        read_lines(tmp_path / "absent.txt")
    with pytest.raises(DataFormatError, match="is a directory"):
        read_lines(tmp_path)


def test_damaged_compressed_file(tmp_path):
    data = gzip.compress(b"a\nb\n" * 1000)
    path = write(tmp_path / "cut.gz", data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="cut.gz"):
        list(read_lines(path))


# ---------------------------------------------------------------- the error roots


def test_error_roots():
    for error in (DataFormatError, DataUsageError, TagSchemeError, WordNetNotFoundError):
        assert issubclass(error, DataError)
    for error in (ElmoFileError, ModelNotAvailableError, BackboneUsageError):
        assert issubclass(error, BackboneError)
    from elmo_core.embed import SentenceFileError
    from elmo_core.store import FeatureStoreError

    assert issubclass(SentenceFileError, ElmoFileError) and issubclass(FeatureStoreError, ElmoFileError)
    assert issubclass(DataError, ValueError) and issubclass(BackboneError, ValueError)
    assert not issubclass(DataError, BackboneError) and not issubclass(BackboneError, DataError)
    assert not issubclass(ModelNotAvailableError, RuntimeError)  # was a RuntimeError before the hierarchy


def test_bad_arguments_raise_the_usage_errors(tmp_path):
    from data.conll import read_conll
    from data.tsv import read_tsv
    from elmo_core import ScalarMix, batch_to_ids, load_bilm

    with pytest.raises(DataUsageError):
        normalize_scheme("BILOU-ish")
    with pytest.raises(DataUsageError):
        read_conll(tmp_path / "x", columns=1)
    with pytest.raises(DataUsageError):
        read_tsv(tmp_path / "x", header="sometimes")
    with pytest.raises(BackboneUsageError):
        load_bilm(options="o.json", weights="w.hdf5", precision="fp8")
    with pytest.raises(BackboneUsageError):
        load_bilm(options="o.json", weights="w.hdf5", device="tpu")
    with pytest.raises(BackboneUsageError):
        ScalarMix(3, mode="median")
    with pytest.raises(BackboneUsageError):
        batch_to_ids([["a"], []])


def test_readers_raise_data_errors_for_missing_files(tmp_path):
    from data.conll import read_conll
    from data.sst import read_sst
    from data.tsv import read_tsv
    from data.wsd import read_gold_keys, read_wsd

    for read in (read_conll, read_sst, read_tsv, read_gold_keys, read_wsd):
        with pytest.raises(DataFormatError, match="file not found"):
            read(tmp_path / "absent")
