"""One entry point to get a ready biLM: by name, or from an options JSON + HDF5 weights.

Names are turned into files by :mod:`elmo_core.models`; this module builds the model from them.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch

from .bilm import ElmoBiLm
from .errors import BackboneUsageError
from .hardware import bf16_matrix_units
from .io import update_hash
from .models import resolve
from .options import load_options
from .weights import load_weights


def load_bilm_from_files(
    options: str | Path, weights: str | Path, stateful: bool = False, type_cache_size: int = 100_000
) -> ElmoBiLm:
    bilm = ElmoBiLm(load_options(options), stateful=stateful, type_cache_size=type_cache_size)
    load_weights(bilm, weights)
    return bilm.eval()


PRECISIONS = ("fp32", "int8", "bf16", "fp16")


def quantize_int8(bilm: ElmoBiLm) -> ElmoBiLm:
    """Dynamic int8 quantisation of every linear layer (LSTM gates and projections, highway, CNN
    projection); activations stay float. CPU only."""
    import warnings

    with warnings.catch_warnings():
        # torch marks its quantized tensor API deprecated; it still ships and works in 2.x.
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(bilm, {torch.nn.Linear}, dtype=torch.qint8)


def load_bilm(
    name: str | None = None,
    options: str | Path | None = None,
    weights: str | Path | None = None,
    stateful: bool = False,
    device: str | torch.device = "cpu",
    type_cache_size: int = 100_000,
    precision: str = "fp32",
) -> ElmoBiLm:
    """Load a biLM in eval mode.

    Either ``name`` (``default``, ``small``, ``medium``, ``original``, ``original-5.5b``) or both
    ``options`` and ``weights`` must be given. ``precision``: ``fp32`` (exact), ``int8`` (dynamic
    quantisation, CPU), ``bf16``/``fp16`` (autocast; outputs are returned as float32). On a CPU,
    ``bf16`` needs bf16 matrix units (AMX or AVX512-BF16, see :mod:`elmo_core.hardware`): without
    them it is slower than fp32, so fp32 runs instead, with a warning. ``bilm.precision`` says
    which numerics the returned biLM uses.
    """
    if (options is None) != (weights is None):
        raise BackboneUsageError("pass both options and weights, or neither (then a model name)")
    if precision not in PRECISIONS:
        raise BackboneUsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    check_device(device)
    if options is None:
        options, weights = resolve(name or "default")
    bilm = load_bilm_from_files(options, weights, stateful=stateful, type_cache_size=type_cache_size)
    if precision == "int8":
        if torch.device(device).type != "cpu":
            raise BackboneUsageError("int8 (dynamic quantisation) runs on the CPU only; use bf16 or fp16 on a GPU")
        bilm = quantize_int8(bilm)
    precision = effective_precision(precision, device)
    bilm.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    bilm.precision = precision
    return bilm.to(device)


def effective_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """``precision``, except ``bf16`` on a CPU without bf16 matrix units or on a GPU without bf16
    support (before Ampere), which runs fp32 (warned)."""
    kind = torch.device(device).type
    if precision == "bf16" and kind == "cpu" and bf16_matrix_units() is None:
        warnings.warn(
            "bf16 requested, but this CPU has no bf16 matrix units (neither amx_bf16 nor avx512_bf16 in "
            "/proc/cpuinfo), where bf16 is slower than fp32: running fp32 instead",
            stacklevel=3,
        )
        return "fp32"
    if precision == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        warnings.warn(
            f"bf16 requested, but {torch.cuda.get_device_name(device)} does not support it: running fp32 "
            "instead (fp16 with a loss scale is the GPU's reduced precision there)",
            stacklevel=3,
        )
        return "fp32"
    return precision


def check_device(device: str | torch.device) -> None:
    """A clear error, before any model is read, for a device this PyTorch cannot use."""
    try:
        kind = torch.device(device).type
    except RuntimeError:
        kind = None
    if kind == "cuda" and not torch.cuda.is_available():
        reason = (
            "this PyTorch is a CPU-only build"
            if torch.version.cuda is None
            else "no CUDA GPU is visible (check CUDA_VISIBLE_DEVICES and the driver)"
        )
        raise BackboneUsageError(
            f"device {str(device)!r}: {reason} (torch {torch.__version__}); "
            f"use --device cpu, or install a CUDA build of PyTorch"
        )
    if kind not in ("cpu", "cuda"):
        raise BackboneUsageError(f"device {str(device)!r}: expected cpu, cuda or cuda:N")


def model_identity(options: str | Path, weights: str | Path) -> str:
    """A short hash of the model files (used to key feature stores): the first 16 hex digits of
    the SHA-256 of the options file's bytes followed by the weight file's bytes. Never change it:
    every existing feature store is keyed by it."""
    digest = hashlib.sha256()
    for path in (options, weights):
        update_hash(digest, path)
    return digest.hexdigest()[:16]
