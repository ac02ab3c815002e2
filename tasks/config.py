"""Task configs: YAML files with ``${ENV:-default}`` expansion and ``--set a.b=value`` overrides."""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import yaml

from data.errors import DataFormatError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value):
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string of a config tree."""
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    if isinstance(value, str):
        return _ENV.sub(lambda m: os.environ.get(m.group(1), m.group(2) if m.group(2) is not None else ""), value)
    return value


def set_dotted(tree: dict, dotted: str, value) -> None:
    node = tree
    keys = dotted.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"--set {dotted}: '{key}' is not a section")
    node[keys[-1]] = value


def get_dotted(tree: dict, dotted: str, default=None):
    node = tree
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def load_config(path: str | Path, overrides: dict | None = None) -> dict:
    """Read a task config; relative data paths stay relative to the working directory."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, None, "config file not found")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        raise DataFormatError(path, None if line is None else line + 1, f"invalid YAML: {err}") from None
    tree = copy.deepcopy(tree)
    for key, value in (overrides or {}).items():
        set_dotted(tree, key, value)
    return expand_env(tree)
