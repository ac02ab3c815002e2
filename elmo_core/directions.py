"""Run a biLM's direction stacks side by side on the CPU, two threads pulling from one queue.

The forward and backward stacks of a biLM share nothing, and each step's recurrent GEMM is small
(at most a few hundred rows), which a 2-thread GEMM splits poorly: on 2 cores one direction per
core runs faster than both directions one after the other with 2 threads each (the measured gain
is in docs/benchmarks.md, the "side by side" row of the fast path's table of changes).

:func:`run_queued` takes any number of such tasks (a stack per direction and batch, see
``ElmoBiLm.run_lstm_batches``): the caller's thread and one worker each take the next task when
they finish one, so a core that runs slower for a while does fewer tasks instead of holding the
other at a join. Each thread runs its tasks with half of the caller's threads (rounded down, at
least one), the same count on both, so what a task computes does not depend on which thread took
it. Only without autograd (inference), on the CPU, with >= 2 threads; anything else runs the
tasks one after the other in order. The caller's thread count is restored afterwards.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")
U = TypeVar("U")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _worker_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="elmo-backward")
        return _pool


def _forget_pool_in_child() -> None:
    # A forked child has none of the parent's threads: make it start its own worker when needed.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_in_child)


def can_run_side_by_side(device_type: str) -> bool:
    """``device_type``: the tensors' device type; any other word (e.g. ``"serial"``) opts out."""
    return device_type == "cpu" and not torch.is_grad_enabled() and torch.get_num_threads() >= 2


class _Queue:
    """The next task's index, handed out under a lock; ``failed`` stops both threads early."""

    def __init__(self, n: int):
        self._next, self._n, self._lock = 0, n, threading.Lock()
        self.failed = False

    def take(self) -> int | None:
        with self._lock:
            if self.failed or self._next >= self._n:
                return None
            self._next += 1
            return self._next - 1


def run_queued(tasks: Sequence[Callable[[], T]], device_type: str) -> list[T]:
    """``[task() for task in tasks]``, computed by two threads taking tasks in order from a shared
    queue when :func:`can_run_side_by_side`. The first exception raised by a task is re-raised once
    both threads have stopped (neither starts a new task after it)."""
    if not can_run_side_by_side(device_type) or len(tasks) < 2:
        return [task() for task in tasks]
    threads = torch.get_num_threads()
    each = max(1, threads // 2)
    results: list = [None] * len(tasks)
    queue = _Queue(len(tasks))

    def drain() -> None:
        torch.set_num_threads(each)
        while (index := queue.take()) is not None:
            try:
                results[index] = tasks[index]()
            except BaseException:
                queue.failed = True
                raise

    # Grad mode, inference mode and autocast are thread-local: carry the caller's into the worker.
    inference = torch.is_inference_mode_enabled()
    autocast = torch.is_autocast_enabled("cpu")
    autocast_dtype = torch.get_autocast_dtype("cpu")

    def in_worker() -> None:
        with (
            torch.inference_mode(inference),
            torch.no_grad(),
            torch.autocast("cpu", dtype=autocast_dtype, enabled=autocast),
        ):
            drain()

    pending = _worker_pool().submit(in_worker)
    try:
        drain()
    finally:
        torch.set_num_threads(threads)
        # A worker still busy with another caller's tasks never started: the queue is done anyway.
        worker_error = None if pending.cancel() else pending.exception()  # waits for the worker
    if worker_error is not None:
        raise worker_error
    return results


def run_side_by_side(forward: Callable[[], T], backward: Callable[[], U], device_type: str) -> tuple[T, U]:
    """``(forward(), backward())``, computed concurrently when :func:`can_run_side_by_side`."""
    forward_result, backward_result = run_queued([forward, backward], device_type)
    return forward_result, backward_result
