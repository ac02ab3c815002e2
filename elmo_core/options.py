"""The ``options.json`` of an ELMo model (bilm-tf / AllenNLP layout), validated.

Only what the architecture needs is read; every missing field is reported by its JSON path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ElmoFileError


@dataclass(frozen=True)
class CharCnnOptions:
    char_dim: int
    filters: tuple[tuple[int, int], ...]  # (width, n_filters)
    n_highway: int
    n_characters: int  # 261 in training files, 262 for prediction; the HDF5 holds 261 rows either way
    max_chars: int
    activation: str  # "relu" | "tanh"

    @property
    def n_filters(self) -> int:
        return sum(n for _, n in self.filters)


@dataclass(frozen=True)
class LstmOptions:
    dim: int  # cell size
    projection_dim: int
    n_layers: int
    cell_clip: float | None
    proj_clip: float | None
    use_skip_connections: bool


@dataclass(frozen=True)
class ElmoOptions:
    char_cnn: CharCnnOptions
    lstm: LstmOptions

    @property
    def output_dim(self) -> int:
        """Width of every output layer: forward and backward projections concatenated."""
        return 2 * self.lstm.projection_dim

    @property
    def num_layers(self) -> int:
        """L + 1: the token layer plus one per LSTM layer."""
        return self.lstm.n_layers + 1

    def to_json_dict(self) -> dict:
        cc, ls = self.char_cnn, self.lstm
        lstm = {
            "dim": ls.dim,
            "projection_dim": ls.projection_dim,
            "n_layers": ls.n_layers,
            "use_skip_connections": ls.use_skip_connections,
        }
        if ls.cell_clip is not None:
            lstm["cell_clip"] = ls.cell_clip
        if ls.proj_clip is not None:
            lstm["proj_clip"] = ls.proj_clip
        return {
            "lstm": lstm,
            "char_cnn": {
                "embedding": {"dim": cc.char_dim},
                "filters": [list(f) for f in cc.filters],
                "n_highway": cc.n_highway,
                "n_characters": cc.n_characters,
                "max_characters_per_token": cc.max_chars,
                "activation": cc.activation,
            },
        }


def _require(tree: dict, path: str, source: str):
    node = tree
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            raise ElmoFileError(f"{source}: options JSON has no field '{path}'")
        node = node[key]
    return node


def _optional_clip(tree: dict, key: str) -> float | None:
    value = tree.get(key)
    # bilm-tf treats a missing or zero clip as "no clipping".
    return float(value) if value else None


def options_from_dict(tree: dict, source: str = "<options>") -> ElmoOptions:
    """Validate a parsed options JSON; ``source`` names it in error messages."""
    filters = _require(tree, "char_cnn.filters", source)
    if (
        not isinstance(filters, list)
        or not filters
        or not all(
            isinstance(f, (list, tuple)) and len(f) == 2 and all(isinstance(x, int) and x > 0 for x in f)
            for f in filters
        )
    ):
        raise ElmoFileError(f"{source}: 'char_cnn.filters' must be a non-empty list of [width, n_filters]")
    activation = tree["char_cnn"].get("activation", "relu")
    if activation not in ("relu", "tanh"):
        raise ElmoFileError(f"{source}: 'char_cnn.activation' must be relu or tanh, found {activation!r}")
    n_characters = int(_require(tree, "char_cnn.n_characters", source))
    if n_characters not in (261, 262):
        raise ElmoFileError(f"{source}: 'char_cnn.n_characters' must be 261 or 262, found {n_characters}")
    char_cnn = CharCnnOptions(
        char_dim=int(_require(tree, "char_cnn.embedding.dim", source)),
        filters=tuple((int(w), int(n)) for w, n in filters),
        n_highway=int(_require(tree, "char_cnn.n_highway", source)),
        n_characters=n_characters,
        max_chars=int(tree["char_cnn"].get("max_characters_per_token", 50)),
        activation=activation,
    )
    lstm_tree = _require(tree, "lstm", source)
    lstm = LstmOptions(
        dim=int(_require(tree, "lstm.dim", source)),
        projection_dim=int(_require(tree, "lstm.projection_dim", source)),
        n_layers=int(_require(tree, "lstm.n_layers", source)),
        cell_clip=_optional_clip(lstm_tree, "cell_clip"),
        proj_clip=_optional_clip(lstm_tree, "proj_clip"),
        use_skip_connections=bool(lstm_tree.get("use_skip_connections", False)),
    )
    if lstm.n_layers < 1:
        raise ElmoFileError(f"{source}: 'lstm.n_layers' must be >= 1, found {lstm.n_layers}")
    return ElmoOptions(char_cnn=char_cnn, lstm=lstm)


def load_options(path: str | Path) -> ElmoOptions:
    """Read and validate an ``options.json``."""
    path = Path(path)
    if path.is_dir():
        raise ElmoFileError(f"{path}: is a directory (expected an options JSON file)")
    if not path.is_file():
        raise ElmoFileError(f"{path}: options file not found")
    try:
        tree = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ElmoFileError(f"{path}: not a valid JSON file ({err})") from None
    if not isinstance(tree, dict):
        raise ElmoFileError(f"{path}: options JSON must be an object")
    return options_from_dict(tree, str(path))
