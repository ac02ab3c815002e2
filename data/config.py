"""Typed, strict YAML configs: a YAML file (``${ENV:-default}`` expanded) plus ``--set a.b=value``
overrides become nested dataclasses, with every problem found before any work starts.

A config class is a plain ``@dataclass`` whose fields are typed (``int``, ``float``, ``str``,
``bool``, ``X | None``, ``Literal[...]``, ``list[T]``, ``dict[str, T]``, unions of those, or
another config dataclass for a section) and may carry a range check in their metadata
(``field(default=1, metadata=positive)``). A section may define ``problems(self) -> list[str]``
for rules that relate two of its fields. :func:`build` reports

* unknown keys with the file, the key path and the closest valid key (``train.epoch: unknown
  key; did you mean train.epochs?``),
* wrong types and out-of-range values with the key, what was expected and what was found,

all of them at once, as one :class:`ConfigError` (a :class:`~data.errors.DataFormatError`).

Why dataclasses and not pydantic: the configs need strict keys, a handful of scalar types and
ranges, and messages that name the file and suggest a key; that is the ~150 lines below, with
no compiled dependency, and the config classes stay readable beside the code they configure.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from data.errors import DataFormatError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
MAX_PROBLEMS_SHOWN = 12


class ConfigError(DataFormatError):
    """A config file or override has unknown keys, wrong types or out-of-range values.

    ``problems`` lists them as ``key.path: what is wrong``; the message shows them one a line.
    """

    def __init__(self, source: str | Path, problems: list[str]):
        self.problems = list(problems)
        shown = self.problems[:MAX_PROBLEMS_SHOWN]
        more = len(self.problems) - len(shown)
        lines = "\n  ".join(shown) + (f"\n  ... and {more} more" if more > 0 else "")
        head = "invalid config" if len(self.problems) == 1 else f"invalid config ({len(self.problems)} problems)"
        super().__init__(source, None, f"{head}:\n  {lines}")


# -- range checks, used as ``field(default=..., metadata=positive)`` ------------------------------
def _check(test, expected: str) -> dict:
    return {"check": (test, expected)}


positive = _check(lambda v: v > 0, "a number > 0")
non_negative = _check(lambda v: v >= 0, "a number >= 0")
unit_interval = _check(lambda v: 0 <= v < 1, "a number in [0, 1)")
fraction = _check(lambda v: 0 < v <= 1, "a number in (0, 1]")


# -- reading --------------------------------------------------------------------------------------
def expand_env(value):
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string of a config tree. A string that is
    one placeholder and nothing else is read as YAML afterwards, so ``epochs: ${EPOCHS:-10}`` is 10."""
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    if isinstance(value, str) and "${" in value:
        expanded = _ENV.sub(lambda m: os.environ.get(m.group(1), m.group(2) if m.group(2) is not None else ""), value)
        if _ENV.fullmatch(value.strip()):
            try:
                parsed = yaml.safe_load(expanded)
            except yaml.YAMLError:
                return expanded
            return parsed if isinstance(parsed, (int, float, bool)) else expanded
        return expanded
    return value


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error in one line: the problem, its column, and the construct it broke (with its line),
    without PyYAML's multi-line excerpt of a ``<unicode string>``."""
    problem = getattr(err, "problem", None)
    if not problem:
        return " ".join(str(err).split())
    mark, context, context_mark = (getattr(err, name, None) for name in ("problem_mark", "context", "context_mark"))
    text = f"{problem}" + (f" at column {mark.column + 1}" if mark is not None else "")
    if context:
        text += (
            f" ({context}" + (f" that starts on line {context_mark.line + 1}" if context_mark is not None else "") + ")"
        )
    return text


def read_yaml(path: str | Path) -> dict:
    """The YAML mapping in ``path`` (``{}`` when empty); errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, None, "config file not found" if not path.exists() else "config path is not a file")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataFormatError(path, None, "config file is not UTF-8 text") from None
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        raise DataFormatError(path, None if line is None else line + 1, f"invalid YAML: {yaml_problem(err)}") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise DataFormatError(path, None, f"a config is a YAML mapping (key: value lines), found {type(tree).__name__}")
    return tree


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["a.b=1", "c=[x, y]"]`` -> ``{"a.b": 1, "c": ["x", "y"]}``; values are read as YAML."""
    overrides = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--set", [f"{pair!r}: expected KEY=VALUE, e.g. train.epochs=5"])
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(
                "--set", [f"{key.strip()}: the value {value!r} is not valid YAML ({err.problem})"]
            ) from None
    return overrides


def set_dotted(tree: dict, dotted: str, value, source: str = "--set") -> None:
    node = tree
    keys = dotted.split(".")
    for depth, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(source, [f"{dotted}: '{'.'.join(keys[: depth + 1])}' is a value, not a section"])
        node = child
    node[keys[-1]] = value


def get_dotted(tree: dict, dotted: str, default=None):
    node = tree
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def merge_overrides(tree: dict, overrides: dict[str, Any] | None, source: str = "--set") -> dict:
    """A deep copy of ``tree`` with dotted ``overrides`` applied."""
    import copy

    tree = copy.deepcopy(tree)
    for key, value in (overrides or {}).items():
        set_dotted(tree, key, value, source)
    return tree


def read_with_overrides(path: str | Path, overrides: dict[str, Any] | None = None) -> tuple[dict, str]:
    """The YAML tree of ``path`` with dotted ``overrides`` applied, and how messages name its source
    (``FILE (with --set a.b, c)``)."""
    tree = merge_overrides(read_yaml(path), overrides)
    return tree, f"{path} (with --set {', '.join(overrides)})" if overrides else str(path)


def changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config trees."""
    keys = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


# -- typing ---------------------------------------------------------------------------------------
def build(cls, tree: dict, source: str | Path = "<config>"):
    """An instance of the config dataclass ``cls`` from the plain ``tree``; raises :class:`ConfigError`
    listing every unknown key, wrong type and out-of-range value."""
    problems: list[str] = []
    value = _build_section(cls, tree, "", problems, cls)
    if problems:
        raise ConfigError(source, problems)
    return value


def known_key(cls, dotted: str) -> bool:
    """Whether ``a.b.c`` names a field of the config class ``cls`` (or lies inside a mapping field)."""
    node = cls
    for key in dotted.split("."):
        if not dataclasses.is_dataclass(node):
            return True  # inside a plain mapping (e.g. data.limit.train): its value is checked when built
        hints = typing.get_type_hints(node)
        if key not in hints:
            return False
        nested = [a for a in (typing.get_args(hints[key]) or (hints[key],)) if dataclasses.is_dataclass(a)]
        node = nested[0] if nested else hints[key]
    return True


def to_dict(config) -> dict:
    """The config as plain data (what ``config.yaml`` of a run holds)."""
    return dataclasses.asdict(config)


def _build_section(cls, tree, prefix: str, problems: list[str], root):
    if not isinstance(tree, dict):
        problems.append(f"{prefix.rstrip('.') or '<top>'}: expected a section (key: value lines), found {_found(tree)}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    values = {}
    for key, raw in tree.items():
        path = f"{prefix}{key}"
        if key not in fields:
            problems.append(f"{path}: unknown key{_suggestion(str(key), prefix, fields, root)}")
            continue
        ok, value = _convert(hints[key], raw, path, problems, root)
        if not ok:
            continue
        check = fields[key].metadata.get("check")
        if check is not None and value is not None and not isinstance(value, (list, dict)) and not check[0](value):
            problems.append(f"{path}: expected {check[1]}, found {value!r}")
            continue
        values[key] = value
    section = cls(**values)
    if hasattr(section, "problems"):
        problems.extend(f"{prefix}{p}" for p in section.problems())
    return section


def _convert(hint, raw, path: str, problems: list[str], root) -> tuple[bool, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if raw is None and type(None) in args:
            return True, None
        candidates = [a for a in args if a is not type(None)]
        for candidate in candidates:  # the first type that takes the value without complaint
            trial: list[str] = []
            ok, value = _convert(candidate, raw, path, trial, root)
            if ok and not trial:
                return True, value
        if len(candidates) == 1:
            return _convert(candidates[0], raw, path, problems, root)
        problems.append(f"{path}: expected {_describe(hint)}, found {_found(raw)}")
        return False, None
    if origin is Literal:
        if raw in args:
            return True, raw
        problems.append(f"{path}: expected one of {', '.join(map(repr, args))}, found {_found(raw)}")
        return False, None
    if dataclasses.is_dataclass(hint):
        before = len(problems)
        value = _build_section(hint, {} if raw is None else raw, f"{path}.", problems, root)
        return len(problems) == before, value
    if origin is list:
        if not isinstance(raw, list):
            problems.append(f"{path}: expected a list of {_describe(args[0])}, found {_found(raw)}")
            return False, None
        items, ok = [], True
        for i, item in enumerate(raw):
            good, value = _convert(args[0], item, f"{path}[{i}]", problems, root)
            ok, _ = ok and good, items.append(value)
        return ok, items
    if origin is dict:
        if not isinstance(raw, dict):
            problems.append(f"{path}: expected a mapping, found {_found(raw)}")
            return False, None
        items, ok = {}, True
        for key, item in raw.items():
            good, items[str(key)] = _convert(args[1], item, f"{path}.{key}", problems, root)
            ok = ok and good
        return ok, items
    if hint is Any:
        return True, raw
    return _scalar(hint, raw, path, problems)


def _scalar(hint, raw, path: str, problems: list[str]) -> tuple[bool, Any]:
    if hint is bool:
        if isinstance(raw, bool):
            return True, raw
    elif hint is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return True, raw
    elif hint is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return True, float(raw)
        if isinstance(raw, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return True, float(raw)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(raw, str):
            return True, raw
    else:
        raise TypeError(f"config field type {hint!r} is not supported")  # a bug in a config class
    problems.append(f"{path}: expected {_describe(hint)}, found {_found(raw)}")
    return False, None


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        parts = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin is list:
        return f"a list of {_describe(args[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(hint):
        return "a section"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _found(raw) -> str:
    if raw is None:
        return "null"
    text = repr(raw)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} ({type(raw).__name__})"


def _all_paths(cls, prefix: str = "") -> list[str]:
    paths = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        paths.append(prefix + f.name)
        nested = [a for a in (typing.get_args(hint) or (hint,)) if dataclasses.is_dataclass(a)]
        for section in nested:
            paths.extend(_all_paths(section, f"{prefix}{f.name}."))
    return paths


def _suggestion(key: str, prefix: str, fields: dict, root) -> str:
    close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {prefix}{close[0]}?"
    elsewhere = [p for p in _all_paths(root) if p.rsplit(".", 1)[-1] == key]
    if elsewhere:
        return f"; '{key}' belongs in {' or '.join(elsewhere)}"
    return f" (valid here: {', '.join(fields)})"
