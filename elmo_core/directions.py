"""Run a biLM layer's forward and backward directions side by side on the CPU.

The two directions of a layer share nothing, and each step's recurrent GEMM is small (at most a
few hundred rows), which a 2-thread GEMM splits poorly: on 2 cores one direction per core runs
faster than both directions one after the other with 2 threads each (the measured gain is in
docs/benchmarks.md, the "side by side" row of the fast path's table of changes). Only without
autograd (inference), on the CPU, with >= 2 threads; anything else runs the two calls one after
the other. Each direction gets half of the threads; the caller's thread count is restored
afterwards.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
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


def run_side_by_side(forward: Callable[[], T], backward: Callable[[], U], device_type: str) -> tuple[T, U]:
    """``(forward(), backward())``, computed concurrently when :func:`can_run_side_by_side`."""
    if not can_run_side_by_side(device_type):
        return forward(), backward()
    threads = torch.get_num_threads()
    mine = threads // 2
    # Grad mode, inference mode and autocast are thread-local: carry the caller's into the worker.
    inference = torch.is_inference_mode_enabled()
    autocast = torch.is_autocast_enabled("cpu")
    autocast_dtype = torch.get_autocast_dtype("cpu")

    def in_worker() -> U:
        torch.set_num_threads(threads - mine)
        with (
            torch.inference_mode(inference),
            torch.no_grad(),
            torch.autocast("cpu", dtype=autocast_dtype, enabled=autocast),
        ):
            return backward()

    pending = _worker_pool().submit(in_worker)
    torch.set_num_threads(mine)
    try:
        forward_result = forward()
    finally:
        torch.set_num_threads(threads)
        backward_result = pending.result()  # re-raises the worker's exception, if any
    return forward_result, backward_result
