"""A per-thread scratch tensor reused across the inference fast path's calls.

Fresh memory of tens of MB (the LSTM's input gates) costs a page fault per 4 KiB every time it is
allocated: glibc maps allocations above 32 MB straight from the kernel and returns them on free,
and smaller ones are often trimmed back too. On the "small" biLM that was ~200k faults (~0.8 GB of
fresh pages) per embedding pass of 1,000 sentences, and ~8 % of its time. Reusing one buffer per
thread avoids it (the two LSTM directions run in two threads side by side, so each has its own).
"""

from __future__ import annotations

import threading

import torch

KEEP_BYTES = 64 << 20  # larger scratch tensors are not kept between calls
_kept = threading.local()


def scratch(numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A flat tensor of ``numel`` elements (uninitialised), reused by this thread's later calls
    (on the CPU, up to :data:`KEEP_BYTES`). The caller must be done with it before the same thread
    asks again, and must not return it (or a view of it) to its own caller."""
    kept = getattr(_kept, "buffer", None)
    if kept is not None and kept.dtype == dtype and kept.device == device and kept.numel() >= numel:
        return kept[:numel]
    # A normal tensor even under torch.inference_mode(): an inference tensor kept here could not be
    # written in place by a later call made outside inference mode (e.g. under no_grad).
    with torch.inference_mode(False):
        buffer = torch.empty(numel, dtype=dtype, device=device)
    if device.type == "cpu" and numel * dtype.itemsize <= KEEP_BYTES:
        _kept.buffer = buffer
    return buffer
