"""The LSTM cell's pointwise math in one pass, bit for bit what PyTorch's eager ops compute.

After a step's GEMMs, the eager step (:func:`eager_cell_update`) makes a dozen passes over the
step's gates and cell state, one PyTorch kernel each. On "small" those passes cost about a quarter
of the step's recurrent GEMM on a CPU (the measurements are in docs/benchmarks.md, issue #17).
``kernels/lstm_cell.c`` makes one pass with the same arithmetic: PyTorch's sigmoid (SLEEF's exp,
as PyTorch's AVX2 and AVX-512 builds run it) and every other value rounded where PyTorch's op
rounds it. So the outputs, and everything built on them (feature stores, trained runs), keep
their bits.

The C file is compiled on first use with the system's C compiler (``$CC``, else ``cc``, ``gcc`` or
``clang``; ``-mavx2 -mfma``) into ``$ELMO_TASKS_CACHE/kernels`` and loaded through ctypes. The
kernel is used only if the library then gives eager PyTorch's bits on a check set of values
(:func:`kernel`). If anything is missing (no compiler, a CPU or PyTorch build without AVX2, a
PyTorch whose ops round differently) the eager ops run, and :func:`status` says why.
``ELMO_TASKS_FUSED_CELL=0`` turns the kernel off.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import NamedTuple

import torch

from .io import cache_dir

SOURCE = Path(__file__).parent / "kernels" / "lstm_cell.c"
FLAGS = ("-O2", "-mavx2", "-mfma", "-ffp-contract=off", "-shared", "-fPIC")
DISABLE_ENV = "ELMO_TASKS_FUSED_CELL"  # 0 / no / false / off: eager ops only
# PyTorch's vectorised loops take two vectors at a time (16 floats with AVX2, 32 with AVX-512) and
# finish a tensor's remainder with scalar code, whose exp (glibc's) rounds differently: the kernel
# has the eager bits where every tensor of the step is whole chunks, i.e. the cell size a multiple.
CHUNK_FLOATS = {"AVX2": 16, "AVX512": 32}

log = logging.getLogger(__name__)
_lock = threading.Lock()
_loaded: tuple[Kernel | None, str] | None = None  # (kernel, why not) once decided


def eager_cell_update(gates: torch.Tensor, c: torch.Tensor, p: torch.Tensor, clip: float | None) -> None:
    """The cell's pointwise math with PyTorch's ops, in place: ``gates (n, 4 * cell)`` (``i, j, f,
    o``, the candidate ``j`` doubled) are overwritten, ``c (n, cell)`` becomes the new cell state
    (clipped to ``[-clip, clip]`` unless ``clip`` is None) and ``p (n, cell)`` ``tanh(c) * o``.
    Both tanh are taken as ``2 sigmoid(2x) - 1`` (one sigmoid over all four gates)."""
    cell = c.shape[1]
    gates.sigmoid_()
    i, j, f, o = gates[:, :cell], gates[:, cell : 2 * cell], gates[:, 2 * cell : 3 * cell], gates[:, 3 * cell :]
    j.mul_(2).sub_(1)  # tanh of the candidate's pre-activation
    c.mul_(f).addcmul_(i, j)
    if clip is not None:
        c.clamp_(-clip, clip)
    torch.mul(c, 2, out=p).sigmoid_().mul_(2).sub_(1).mul_(o)  # tanh(c) * o


class Kernel(NamedTuple):
    """The loaded library's ``elmo_lstm_cell``; the rounding of ``c * f + i * j`` that matches this
    PyTorch's ``addcmul_`` (``fused_product``: one rounding, as with an FMA); the cell sizes it
    gives the eager bits for (multiples of ``cell_multiple``, see :data:`CHUNK_FLOATS`)."""

    function: ctypes._CFuncPtr
    fused_product: int
    cell_multiple: int

    def update(self, gates: torch.Tensor, c: torch.Tensor, p: torch.Tensor, clip: float | None) -> None:
        """:func:`eager_cell_update`'s results in ``c`` and ``p``, in one pass (``gates`` only read):
        fp32 CPU tensors whose rows are contiguous, the cell size a multiple of ``cell_multiple``."""
        n, cell = c.shape
        self.function(
            gates.data_ptr(),
            gates.stride(0),
            c.data_ptr(),
            c.stride(0),
            p.data_ptr(),
            p.stride(0),
            n,
            cell,
            int(clip is not None),
            0.0 if clip is None else float(clip),
            self.fused_product,
        )


def kernel() -> Kernel | None:
    """The compiled kernel, or None where it cannot be built or would change a bit (then
    :func:`status` says why). Decided once per process, on the first call."""
    global _loaded
    if _loaded is None:
        with _lock:
            if _loaded is None:
                _loaded = _load()
                log.info("fused LSTM cell: %s", status())
    return _loaded[0]


def status() -> str:
    """Whether the fused kernel is in use, and if not, why."""
    kernel()
    found, why = _loaded  # type: ignore[misc]
    return "in use" if found is not None else f"not used: {why}"


def _load() -> tuple[Kernel | None, str]:
    if os.environ.get(DISABLE_ENV, "").strip().lower() in ("0", "no", "false", "off"):
        return None, f"{DISABLE_ENV}={os.environ[DISABLE_ENV]}"
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in CHUNK_FLOATS:
        return None, f"PyTorch runs its CPU kernels at capability {capability}, not AVX2 or AVX512"
    try:
        library = _open_library()
    except (OSError, subprocess.SubprocessError, RuntimeError) as err:
        return None, str(err)
    function = library.elmo_lstm_cell
    function.restype = None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    function.argtypes = [ptr, i64, ptr, i64, ptr, i64, i64, i64, ctypes.c_int, ctypes.c_float, ctypes.c_int]
    mismatches = {}
    for fused_product in (1, 0):
        candidate = Kernel(function, fused_product, CHUNK_FLOATS[capability])
        mismatches[fused_product] = _differences_from_eager(candidate)
        if mismatches[fused_product] == 0:
            return candidate, ""
    return None, (
        f"the compiled kernel differs from this PyTorch's ops in {min(mismatches.values())} values of the check "
        "(a PyTorch whose kernels round differently)"
    )


def _open_library() -> ctypes.CDLL:
    path = _built_library()
    try:
        return ctypes.CDLL(str(path))
    except OSError:  # a damaged file in the cache (another tool, a full disk): built again, once
        path.unlink(missing_ok=True)
        return ctypes.CDLL(str(_built_library()))


def _built_library() -> Path:
    """The compiled library in the cache, built now if it is not there yet (the name carries a
    hash of the source and flags, so a changed file gets a new library)."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + " ".join(FLAGS).encode()).hexdigest()[:16]
    target = cache_dir() / "kernels" / f"lstm_cell-{digest}.so"
    if target.is_file():
        return target
    found = next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    compiler = shlex.split(os.environ.get("CC", "")) or ([found] if found else [])  # $CC may be "ccache gcc"
    if not compiler:
        raise RuntimeError("no C compiler found (set $CC, or install gcc or clang)")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built under a temporary name and moved into place: another process may be building it too.
    handle, partial = tempfile.mkstemp(dir=target.parent, suffix=".so.partial")
    os.close(handle)
    try:
        done = subprocess.run(
            [*compiler, *FLAGS, str(SOURCE), "-o", partial], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(compiler)} could not build {SOURCE.name}: {done.stderr.strip()[-500:]}")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def _differences_from_eager(candidate: Kernel) -> int:
    """Values of ``c`` and ``p`` where ``candidate`` and :func:`eager_cell_update` differ in any
    bit (two NaNs count as equal), over pre-activations from tiny to saturating, with and without
    clipping, on an odd row stride."""
    generator = torch.Generator().manual_seed(0)
    rows, cell = 63, 3 * candidate.cell_multiple
    differ = 0
    for scale, clip in ((1.0, None), (4.0, 3.0), (40.0, 3.0), (400.0, None)):
        store = torch.randn(rows, 4 * cell + 5, generator=generator) * scale
        store[0, :4] = torch.tensor([float("inf"), -float("inf"), 0.0, -0.0])
        gates = store[:, : 4 * cell]  # a row stride that is not the row's width
        c = torch.randn(rows, cell, generator=generator) * scale
        expected_gates, expected_c, expected_p = gates.clone(), c.clone(), torch.empty(rows, cell)
        eager_cell_update(expected_gates, expected_c, expected_p, clip)
        found_c, found_p = c.clone(), torch.full((rows, cell), float("nan"))
        candidate.update(gates, found_c, found_p, clip)
        for found, expected in ((found_c, expected_c), (found_p, expected_p)):
            same = (found.view(torch.int32) == expected.view(torch.int32)) | (found.isnan() & expected.isnan())
            differ += int((~same).sum())
    return differ
