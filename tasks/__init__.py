"""Task heads, trainer, metrics and the elmo-tasks command line.

``from tasks import load_model`` loads a trained run for prediction from Python (:mod:`tasks.api`);
it is imported on first use, so that ``import tasks.cli`` stays light.
"""

from __future__ import annotations

__all__ = ["TaskModel", "load_model"]


def __getattr__(name: str):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'tasks' has no attribute {name!r}")
