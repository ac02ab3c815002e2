"""Shared test helpers: where the shared data lives, and tiny random ELMo models on disk."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = SHARED_DATA / "elmo-fixtures"

TINY_OPTIONS = {
    "lstm": {"cell_clip": 3, "use_skip_connections": True, "n_layers": 2, "proj_clip": 3,
             "projection_dim": 8, "dim": 16},
    "char_cnn": {"embedding": {"dim": 4}, "filters": [[1, 4], [2, 8], [3, 8]], "n_highway": 1,
                 "n_characters": 262, "max_characters_per_token": 50, "activation": "relu"},
}


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (shared data lives beside the repository; CI has it)")
    return path


def write_random_model(folder: Path, options: dict | None = None, seed: int = 0) -> tuple[Path, Path]:
    """A random biLM written in the official layout: (options.json, weights.hdf5)."""
    from elmo_core import ElmoBiLm, save_weights
    from elmo_core.options import options_from_dict

    options = options or TINY_OPTIONS
    torch.manual_seed(seed)
    bilm = ElmoBiLm(options_from_dict(options))
    with torch.no_grad():
        for param in bilm.parameters():
            param.uniform_(-0.5, 0.5)
        bilm.char_cnn.char_embedding.weight[0].zero_()
    folder.mkdir(parents=True, exist_ok=True)
    options_path, weights_path = folder / "options.json", folder / "weights.hdf5"
    options_path.write_text(json.dumps(options))
    save_weights(bilm, weights_path)
    return options_path, weights_path


@pytest.fixture
def tiny_model(tmp_path: Path) -> tuple[Path, Path]:
    return write_random_model(tmp_path / "tiny")
