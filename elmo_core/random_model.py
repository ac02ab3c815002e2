"""Random biLMs written in the official layout (``options.json`` + ``weights.hdf5``), for tests and
benchmarks that need a model on disk without a trained one.

The written files load through the normal loader (:func:`elmo_core.load_bilm`), so whatever uses
them exercises the same path as a real model. The same ``options``, ``seed`` and ``init`` always
give byte-identical files (and so the same :func:`elmo_core.loading.model_identity`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from .bilm import ElmoBiLm
from .errors import BackboneUsageError
from .io import atomic_write_text
from .options import options_from_dict
from .weights import save_weights

# A tiny model (2 LSTM layers -> 3 output layers of 16 dims): the test suite's model.
TINY_OPTIONS = {
    "lstm": {
        "cell_clip": 3,
        "use_skip_connections": True,
        "n_layers": 2,
        "proj_clip": 3,
        "projection_dim": 8,
        "dim": 16,
    },
    "char_cnn": {
        "embedding": {"dim": 4},
        "filters": [[1, 4], [2, 8], [3, 8]],
        "n_highway": 1,
        "n_characters": 262,
        "max_characters_per_token": 50,
        "activation": "relu",
    },
}

INITS = ("uniform", "scaled-normal")


def random_bilm(options: dict | None = None, seed: int = 0, init: str = "uniform") -> ElmoBiLm:
    """A biLM with random weights (the padding character's embedding stays zero).

    ``init="uniform"``: every parameter ~ U(-0.5, 0.5) (the tests' model). ``init="scaled-normal"``:
    every parameter ~ N(0, (1.5 / sqrt(last dim))^2), which gives about unit-variance activations
    like a trained ELMo's, for speed and accuracy measurements on realistic magnitudes.
    """
    if init not in INITS:
        raise BackboneUsageError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    torch.manual_seed(seed)
    bilm = ElmoBiLm(options_from_dict(options if options is not None else TINY_OPTIONS))
    with torch.no_grad():
        for param in bilm.parameters():
            if init == "uniform":
                param.uniform_(-0.5, 0.5)
            else:
                param.normal_(0, 1.5 / max(param.shape[-1], 1) ** 0.5)
        bilm.char_cnn.char_embedding.weight[0].zero_()
    return bilm


def write_random_model(
    folder: str | Path, options: dict | None = None, seed: int = 0, init: str = "uniform"
) -> tuple[Path, Path]:
    """A random biLM (see :func:`random_bilm`) written in the official layout into ``folder``
    (created if needed); returns ``(options.json, weights.hdf5)``. ``options`` defaults to
    :data:`TINY_OPTIONS`."""
    options = copy.deepcopy(options) if options is not None else copy.deepcopy(TINY_OPTIONS)
    bilm = random_bilm(options, seed, init)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    options_path, weights_path = folder / "options.json", folder / "weights.hdf5"
    atomic_write_text(options_path, json.dumps(options))
    save_weights(bilm, weights_path)
    return options_path, weights_path
