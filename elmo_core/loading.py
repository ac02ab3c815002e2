"""One entry point to get a ready biLM: by name, or from an options JSON + HDF5 weights."""
from __future__ import annotations

from pathlib import Path

import torch

from .bilm import ElmoBiLm
from .models import resolve
from .options import load_options
from .weights import load_weights


def load_bilm_from_files(options: str | Path, weights: str | Path, stateful: bool = False,
                         type_cache_size: int = 100_000) -> ElmoBiLm:
    bilm = ElmoBiLm(load_options(options), stateful=stateful, type_cache_size=type_cache_size)
    load_weights(bilm, weights)
    return bilm.eval()


def load_bilm(name: str | None = None, options: str | Path | None = None, weights: str | Path | None = None,
              stateful: bool = False, device: str | torch.device = "cpu", type_cache_size: int = 100_000) -> ElmoBiLm:
    """Load a biLM in eval mode.

    Either ``name`` (``default``, ``small``, ``medium``, ``original``, ``original-5.5b``) or both
    ``options`` and ``weights`` must be given.
    """
    if (options is None) != (weights is None):
        raise ValueError("pass both options and weights, or neither (then a model name)")
    if options is None:
        options, weights = resolve(name or "default")
    bilm = load_bilm_from_files(options, weights, stateful=stateful, type_cache_size=type_cache_size)
    return bilm.to(device)


def model_identity(options: str | Path, weights: str | Path) -> str:
    """A short hash of the model files (used to key feature stores)."""
    import hashlib

    digest = hashlib.sha256()
    for path in (options, weights):
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]
