"""The one-pass LSTM cell kernel (elmo_core/fused_cell.py) gives exactly the eager ops' bits, is
used only where it applies, and falls back to the eager ops, saying why, where it cannot be built
or would change a bit."""

from __future__ import annotations

import os

import pytest
import torch

from elmo_core import batch_to_ids, fused_cell, load_bilm
from elmo_core.fused_cell import Kernel, eager_cell_update
from elmo_core.random_model import random_bilm
from helpers import TINY_OPTIONS

# the tiny test model with a cell size the kernel takes on AVX2 and AVX-512 alike (a multiple of 32)
OPTIONS_32 = {**TINY_OPTIONS, "lstm": {**TINY_OPTIONS["lstm"], "dim": 32}}
SENTENCES = [
    "The dog let out a sharp bark".split(),
    "Bark".split(),
    "The bark of the ancient oak was rough and grey , the dog said .".split(),
]


@pytest.fixture
def kernel() -> Kernel:
    found = fused_cell.kernel()
    if found is None:
        pytest.skip(f"fused LSTM cell {fused_cell.status()}")
    return found


@pytest.fixture
def fresh_loader(monkeypatch, tmp_path):
    """The loader as in a new process, with an empty kernel cache; the tests' state comes back after."""
    monkeypatch.setattr(fused_cell, "_loaded", None)
    monkeypatch.setenv("ELMO_TASKS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(fused_cell.DISABLE_ENV, raising=False)
    return tmp_path / "cache" / "kernels"


def bits_differ(found: torch.Tensor, expected: torch.Tensor) -> int:
    same = (found.view(torch.int32) == expected.view(torch.int32)) | (found.isnan() & expected.isnan())
    return int((~same).sum())


@pytest.mark.parametrize("cell", [32, 1024])
@pytest.mark.parametrize("rows", [1, 37])
@pytest.mark.parametrize("scale, clip", [(0.5, None), (3.0, 3.0), (30.0, 3.0), (300.0, None), (3.0, 0.25)])
def test_kernel_gives_the_eager_ops_bits(kernel, cell, rows, scale, clip):
    generator = torch.Generator().manual_seed(cell + rows)
    gates = torch.randn(rows, 4 * cell, generator=generator) * scale
    c = torch.randn(rows, cell, generator=generator) * scale
    expected_c, expected_p = c.clone(), torch.empty(rows, cell)
    eager_cell_update(gates.clone(), expected_c, expected_p, clip)
    found_c, found_p = c.clone(), torch.full((rows, cell), float("nan"))
    kernel.update(gates, found_c, found_p, clip)
    assert bits_differ(found_c, expected_c) == 0
    assert bits_differ(found_p, expected_p) == 0


def test_kernel_reads_rows_at_their_stride_and_leaves_the_gates_alone(kernel):
    """The step passes a slice of its gate buffer (row stride = the buffer's width) and the running
    prefix of ``c`` and the pre-projection buffer; rows past ``n`` are not touched."""
    generator = torch.Generator().manual_seed(3)
    cell = 32
    buffer = torch.randn(10, 4 * cell + 8, generator=generator) * 4
    gates = buffer[2:7, : 4 * cell]
    c_all, p_all = torch.randn(9, cell, generator=generator), torch.zeros(9, cell)
    before_buffer, before_c = buffer.clone(), c_all.clone()
    kernel.update(gates, c_all[:5], p_all[:5], 3.0)
    expected_c, expected_p = before_c[:5].clone(), torch.empty(5, cell)
    eager_cell_update(gates.clone(), expected_c, expected_p, 3.0)
    assert torch.equal(buffer, before_buffer)
    assert bits_differ(c_all[:5], expected_c) == 0 and bits_differ(p_all[:5], expected_p) == 0
    assert torch.equal(c_all[5:], before_c[5:]) and torch.equal(p_all[5:], torch.zeros(4, cell))


def test_the_load_check_detects_a_different_rounding(kernel):
    """The check that decides whether the kernel is used can fail: the other rounding of ``c * f +
    i * j`` (one rounding vs two) already differs from this PyTorch in some values."""
    other = kernel._replace(fused_product=1 - kernel.fused_product)
    assert fused_cell._differences_from_eager(kernel) == 0
    assert fused_cell._differences_from_eager(other) > 0


@pytest.mark.parametrize("packed", [False, True])
def test_biLM_outputs_keep_their_bits_with_the_kernel(kernel, packed):
    """One thread (the kernel's default case): the same bits with the kernel as with the eager ops,
    on the MKL step and on oneDNN's packed-weight step; and the kernel really ran."""
    calls = []
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        bilm = random_bilm(OPTIONS_32, seed=0)
        for layer in bilm.modules():
            if hasattr(layer, "fused_pointwise"):
                layer.prepacked_weights = packed
        ids = batch_to_ids(SENTENCES)
        with torch.no_grad():
            eager = _with_fused(bilm, False)(ids).layers
            update = Kernel.update
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(Kernel, "update", lambda self, *a: calls.append(1) or update(self, *a))
                fused = _with_fused(bilm, None)(ids).layers
    finally:
        torch.set_num_threads(before)
    assert calls
    assert torch.equal(fused, eager)


def _with_fused(bilm, wanted):
    for layer in bilm.modules():
        if hasattr(layer, "fused_pointwise"):
            layer.fused_pointwise = wanted
    return bilm


def test_kernel_only_where_it_applies(kernel):
    """By default: fp32 on the CPU with one thread for the direction (the two directions side by
    side on two cores); never with ``fused_pointwise = False``; not for a cell size the vector
    loop does not take, nor for bf16 gates."""
    options = {**TINY_OPTIONS, "lstm": {**TINY_OPTIONS["lstm"], "dim": 24}}  # AVX2 vectors, not whole chunks
    odd = random_bilm(options, seed=0).forward_layers[0]
    layer = random_bilm(OPTIONS_32, seed=0).forward_layers[0]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert layer._fused_cell(torch.float32, torch.float32, "cpu") is kernel
        assert odd._fused_cell(torch.float32, torch.float32, "cpu") is None
        assert layer._fused_cell(torch.bfloat16, torch.float32, "cpu") is None
        layer.fused_pointwise = False
        assert layer._fused_cell(torch.float32, torch.float32, "cpu") is None
        torch.set_num_threads(2)
        layer.fused_pointwise = None
        assert layer._fused_cell(torch.float32, torch.float32, "cpu") is None  # the eager ops use both threads
        layer.fused_pointwise = True
        assert layer._fused_cell(torch.float32, torch.float32, "cpu") is kernel
    finally:
        torch.set_num_threads(before)


def test_a_cell_size_the_kernel_does_not_take_still_runs():
    options = {**TINY_OPTIONS, "lstm": {**TINY_OPTIONS["lstm"], "dim": 24}}
    bilm = random_bilm(options, seed=0)
    ids = batch_to_ids(SENTENCES)
    with torch.no_grad():
        fused = _with_fused(bilm, True)(ids).layers
        eager = _with_fused(bilm, False)(ids).layers
    assert torch.equal(fused, eager)


def test_the_library_is_built_once_and_reused(kernel, fresh_loader):
    assert fused_cell.kernel() is not None
    (library,) = fresh_loader.glob("lstm_cell-*.so")
    built = library.stat().st_mtime_ns
    fused_cell._loaded = None  # a second process: loads the cached library, builds nothing
    assert fused_cell.kernel() is not None
    assert [p.name for p in fresh_loader.iterdir()] == [library.name]
    assert library.stat().st_mtime_ns == built


def test_a_damaged_cached_library_is_built_again(kernel, fresh_loader):
    library = fused_cell._built_library()  # built, not loaded: a loaded file must not be overwritten
    library.write_bytes(b"not a shared library")
    assert fused_cell.kernel() is not None
    assert library.read_bytes()[:4] == b"\x7fELF"


def test_switched_off_by_the_environment(fresh_loader, monkeypatch):
    monkeypatch.setenv(fused_cell.DISABLE_ENV, "0")
    assert fused_cell.kernel() is None
    assert fused_cell.status() == f"not used: {fused_cell.DISABLE_ENV}=0"
    assert not fresh_loader.exists()  # nothing was built


def test_no_compiler_falls_back_with_the_reason(fresh_loader, monkeypatch, tiny_model):
    monkeypatch.setenv("CC", "/nonexistent/bin/cc")
    assert fused_cell.kernel() is None
    assert "/nonexistent/bin/cc" in fused_cell.status()
    bilm = _with_fused(load_bilm(options=tiny_model[0], weights=tiny_model[1]), True)
    with torch.no_grad():
        assert bilm(batch_to_ids(SENTENCES)).layers.isfinite().all()  # the eager ops ran


def test_a_failed_build_falls_back_with_the_compiler_message(fresh_loader, monkeypatch, tmp_path):
    failing = tmp_path / "cc"
    failing.write_text('#!/bin/sh\necho "cc: error: unsupported option $1" >&2\nexit 1\n')
    failing.chmod(0o755)
    monkeypatch.setenv("CC", f"{failing} --wrapped")  # $CC may carry a wrapper or flags
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("no build is attempted on this CPU")
    assert fused_cell.kernel() is None
    assert "--wrapped could not build lstm_cell.c: cc: error: unsupported option --wrapped" in fused_cell.status()
    assert not [p for p in fresh_loader.iterdir() if p.suffix == ".so"] if fresh_loader.exists() else True


def test_a_pytorch_that_rounds_differently_falls_back(fresh_loader, monkeypatch):
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512") or os.name != "posix":
        pytest.skip("no build is attempted here")
    monkeypatch.setattr(fused_cell, "_differences_from_eager", lambda candidate: 7)
    if fused_cell.kernel() is None and "differs" not in fused_cell.status():
        pytest.skip(f"fused LSTM cell {fused_cell.status()}")
    assert fused_cell.kernel() is None
    assert "differs from this PyTorch's ops in 7 values" in fused_cell.status()
