"""oneDNN's linear with a pre-packed weight, for the large LSTM's GEMMs on the CPU.

Each inference step multiplies a few dozen to a few hundred rows by the recurrent weight
(``(rows, proj) @ (proj, 4*cell)``: 32 MB on "original"). MKL's ``addmm`` re-packs that weight on
every call, so small-M calls run well below its square-GEMM rate; oneDNN's linear reads a weight
packed once into its blocked layout. The input gates' GEMM (a chunk of a few hundred packed
positions by the input weight) gains the same way. The gain measured on "original" and the shapes
where it does not pay are in docs/benchmarks.md (issue #17). The op is PyTorch's own
(``torch.ops.mkldnn``, the one TorchInductor uses on x86): it is private API, so :func:`available`
checks it once against ``addmm`` and everything falls back to MKL where it is missing or disagrees.
"""

from __future__ import annotations

import functools

import torch


@functools.cache
def available() -> bool:
    """True when this PyTorch has oneDNN's pre-packed linear and it computes ``x @ w.T + other``
    and ``x @ w.T + bias``."""
    if not torch.backends.mkldnn.is_available():
        return False
    ops = torch.ops.mkldnn
    if not (hasattr(ops, "_linear_pointwise") and hasattr(ops, "_reorder_linear_weight")):
        return False
    try:
        generator = torch.Generator().manual_seed(0)
        x, w, other = (torch.randn(shape, generator=generator) for shape in ((5, 8), (12, 8), (5, 12)))
        bias = other[0]
        with torch.no_grad():
            packed = pack_weight(w)
            got, with_bias = linear_add(x, packed, other), linear(x, packed, bias)
        return bool(
            torch.allclose(got, torch.addmm(other, x, w.t()), rtol=1e-5, atol=1e-5)
            and torch.allclose(with_bias, torch.addmm(bias, x, w.t()), rtol=1e-5, atol=1e-5)
        )
    except (RuntimeError, TypeError, AttributeError):  # a PyTorch whose private op changed
        return False


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """``weight (out, in)`` (an ``nn.Linear``'s layout) in oneDNN's blocked layout, for :func:`linear_add`."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), 128)


def linear_add(x: torch.Tensor, packed: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``x (rows, in) @ weight.T + other (rows, out)`` -> a new ``(rows, out)`` tensor."""
    return torch.ops.mkldnn._linear_pointwise.binary(x, other, packed, None, "add")


def linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x (rows, in) @ weight.T (+ bias (out,))`` -> a new ``(rows, out)`` tensor (the LSTM's
    input gates; without ``bias``, the benchmarks' GEMM peak)."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
