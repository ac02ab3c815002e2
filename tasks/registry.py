"""The one registry of tasks: config ``task:`` name -> :class:`~tasks.base.Task` subclass, and the
strict config loader that needs it (the ``task:`` key picks the config class to check against).

Adding a task is one line here (see docs/architecture.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data.config import ConfigError, build, expand_env, read_with_overrides

from .config import TaskConfig, rename_legacy_keys
from .ner import NerTask
from .probe import ChunkProbeTask, PosProbeTask
from .sentiment import Sst2Task, Sst5Task
from .wsd import WsdTask

TASKS = {
    "ner": NerTask,
    "pos": PosProbeTask,
    "chunk": ChunkProbeTask,
    "sst5": Sst5Task,
    "sst2": Sst2Task,
    "wsd": WsdTask,
}


def build_task(config):
    """The task object for a typed config (see :func:`load_task_config`)."""
    return TASKS[config.task](config)


def task_config_from_tree(tree: dict, source: str | Path = "<config>") -> TaskConfig:
    """The typed config of the task named by ``tree['task']``; every problem reported at once."""
    name = tree.get("task")
    if name not in TASKS:
        import difflib

        close = difflib.get_close_matches(str(name), list(TASKS), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        found = "missing" if name is None else f"{name!r}"
        raise ConfigError(source, [f"task: {found}; expected one of {', '.join(TASKS)}{hint}"])
    return build(TASKS[name].Config, rename_legacy_keys(expand_env(tree)), source)


def load_task_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TaskConfig:
    """Read, override, expand and check a task config file."""
    return task_config_from_tree(*read_with_overrides(path, overrides))
