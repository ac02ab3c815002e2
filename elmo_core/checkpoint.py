"""Checkpoint helpers shared by pretraining and task training: crash-safe writes, RNG states."""

from __future__ import annotations

from .io import atomic_torch_save  # noqa: F401  (re-exported: tasks/ imports it from here)

__all__ = ["atomic_torch_save", "python_rng_state"]


def python_rng_state(saved) -> tuple:
    """``random`` states come back from torch.save/JSON as nested lists; ``setstate`` needs tuples."""
    version, internal, gauss = saved
    return (version, tuple(internal), gauss)
