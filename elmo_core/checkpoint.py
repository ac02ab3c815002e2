"""Checkpoint helpers shared by pretraining and task training: crash-safe writes, RNG states."""
from __future__ import annotations

import os
from pathlib import Path

import torch


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to ``PATH.part`` then rename: a crash never leaves a half-written file."""
    partial = path.with_name(path.name + ".part")
    torch.save(obj, partial)
    os.replace(partial, path)


def python_rng_state(saved) -> tuple:
    """``random`` states come back from torch.save/JSON as nested lists; ``setstate`` needs tuples."""
    version, internal, gauss = saved
    return (version, tuple(internal), gauss)
