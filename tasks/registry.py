"""The one registry of tasks: config ``task:`` name -> :class:`~tasks.base.Task` subclass.

Adding a task is one line here (see docs/architecture.md)."""
from __future__ import annotations

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
    """The task object for a typed config (see :func:`tasks.config.load_task_config`)."""
    return TASKS[config.task](config)
