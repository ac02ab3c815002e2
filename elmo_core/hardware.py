"""What the CPU offers for low-precision matrix products, read from the processor's feature flags.

bf16 inference only pays where the CPU multiplies bf16 matrices natively: Intel AMX (``amx_bf16``)
or the AVX-512 BF16 dot-product instructions (``avx512_bf16``, Intel Cooper Lake and later, AMD
Zen 4 and later). Elsewhere oneDNN emulates bf16 and is slower than fp32, so ``bf16`` falls back
to fp32 there (see :func:`elmo_core.loading.load_bilm`).
"""

from __future__ import annotations

import functools
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


@functools.cache
def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The ``flags`` of the first processor in ``/proc/cpuinfo``; empty where there is none (not Linux)."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def bf16_matrix_units(flags: frozenset[str] | None = None) -> str | None:
    """``"AMX"``, ``"AVX512-BF16"`` or ``None`` (no native bf16 matrix products)."""
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    return None


def vector_units(flags: frozenset[str] | None = None) -> str:
    """The widest vector / matrix instructions the CPU offers, for a report's machine line: two
    machines that share a model name ("AMD EPYC") may differ here, and so do their timings and
    the last bits of their float sums. ``"AVX-512 + AMX"``, ``"AVX-512 + AVX512-BF16"``,
    ``"AVX-512"``, ``"AVX2"`` or ``"no AVX2"``; ``"unknown"`` where the flags cannot be read."""
    flags = cpu_flags() if flags is None else flags
    if not flags:
        return "unknown"
    if "avx512f" in flags:
        matrix = bf16_matrix_units(flags)
        return f"AVX-512 + {matrix}" if matrix else "AVX-512"
    return "AVX2" if "avx2" in flags else "no AVX2"
