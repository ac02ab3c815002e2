"""Data-parallel pretraining under torchrun: this process's rank, the process group and the few
collectives the trainer needs, with their failures turned into one readable error.

One process (no torchrun) gets ``Ranks()``: rank 0 of 1, no process group, and collectives that
return their input, so the trainer has one code path and a one-process run is unchanged. Under
torchrun (``WORLD_SIZE`` > 1, read by :func:`elmo_core.store.rank_and_world`) the group is
**gloo** for a CPU run (torch's CPU backend); a GPU run (``device: cuda``, rank ``r`` on
``cuda:LOCAL_RANK``) joins one group with two backends, ``cpu:gloo,cuda:nccl``: DDP's gradient
all-reduce on GPU tensors goes over **NCCL**, while the trainer's own small collectives (set-up,
loss sums, dropout generators, all on CPU tensors or Python objects) stay on gloo.

Failures: gloo raises a ``RuntimeError`` within about a second when a peer's connection closes (a
rank that died, ``kill -9`` included), and after ``timeout_minutes`` when a peer does not answer (a
hung rank; or rank 0 busy alone for longer than that: its heldout evaluation, checkpoint and
export are what the others wait for). :meth:`Ranks.guard` turns either into
:class:`~elmo_core.errors.ProcessGroupError`, and torchrun then stops the other workers and exits
non-zero with a summary naming the rank that failed first. It stops the survivors with SIGTERM,
which may come before they meet the failure themselves: each then writes one line saying so (and
where it was) before it dies as SIGTERM would have made it.

torchrun starts every worker in a session of its own, so a ``kill -9`` of torchrun (or of its
process group) does not reach them, and nothing would stop them: they would train on, holding the
run directory's lock. Each rank therefore watches its parent (:func:`_watch_launcher`) and stops
within a second of torchrun's death, so that a rerun resumes at once.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from data.errors import DataError

from .errors import BackboneError, ProcessGroupError
from .store import rank_and_world

# Long enough for rank 0's heldout evaluation and export on a large model (the other ranks wait
# for them inside a collective); short enough that a hung rank does not hold the others for hours.
DEFAULT_TIMEOUT_MINUTES = 30.0


class Ranks:
    """This process's place among the data-parallel ranks, and the collectives over them.

    ``Ranks()`` is one process: every collective returns its input. :meth:`start` joins torchrun's
    process group when ``WORLD_SIZE`` > 1. Rank 0 leads: it sets up and sends what the others
    need (:meth:`lead` / :meth:`follow`); an error of its set-up is sent instead, so that every
    rank stops with it rather than waiting for a timeout."""

    def __init__(self, rank: int = 0, world: int = 1, owns_group: bool = False, timeout_minutes: float = 0.0):
        self.rank, self.world = rank, world
        self.owns_group, self.timeout_minutes = owns_group, timeout_minutes
        self._led = False
        self._where: Callable[[], str] = lambda: "before training started"
        self._reported = False  # this rank has met a failure and reports it itself
        self._previous_sigterm = None
        self._closed = threading.Event()  # ends the watch on torchrun (_watch_launcher)

    @classmethod
    def start(cls, timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES, device_type: str = "cpu") -> Ranks:
        """The ranks of this run: one process, or torchrun's process group (joined here unless the
        caller already did, with ``timeout_minutes`` on every collective): gloo, plus NCCL for the
        GPU tensors when ``device_type`` is ``"cuda"``."""
        rank, world = rank_and_world()
        ranks = cls._join(rank, world, timeout_minutes, device_type) if world > 1 else cls()
        if "TORCHELASTIC_RUN_ID" in os.environ:  # our parent is torchrun's agent (even with one worker)
            threading.Thread(target=_watch_launcher, args=(os.getppid(), ranks), daemon=True).start()
        return ranks

    @classmethod
    def _join(cls, rank: int, world: int, timeout_minutes: float, device_type: str = "cpu") -> Ranks:
        """Join (or adopt) the process group; torchrun's SIGTERM then gets its one line (:meth:`_on_sigterm`)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_gloo_available()):
            raise ProcessGroupError(
                f"WORLD_SIZE={world}, but this torch build has no torch.distributed with gloo: run in one "
                "process (without torchrun), or install a torch build with distributed support"
            )
        backend = "gloo"
        if device_type == "cuda":
            if not dist.is_nccl_available():
                raise ProcessGroupError(
                    f"WORLD_SIZE={world} on GPUs, but this torch build has no NCCL: install a CUDA build of "
                    "PyTorch with NCCL, or train on the CPU (device: cpu, gloo)"
                )
            backend = "cpu:gloo,cuda:nccl"
        owns = not dist.is_initialized()
        if owns:
            try:
                dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
            except (RuntimeError, ValueError) as err:  # a missing MASTER_ADDR, a rendezvous timeout
                raise ProcessGroupError(
                    f"rank {rank} of {world}: cannot join the process group ({_first_line(err)}); start "
                    "several processes with torchrun --nproc_per_node N, which sets what it needs"
                ) from None
        ranks = cls(dist.get_rank(), dist.get_world_size(), owns, timeout_minutes)
        if threading.current_thread() is threading.main_thread():  # signal handlers live there only
            ranks._previous_sigterm = signal.signal(signal.SIGTERM, ranks._on_sigterm)
        return ranks

    @property
    def main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        self._closed.set()
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.owns_group = False

    # -- failures --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def guard(self, where: Callable[[], str]) -> Iterator[None]:
        """Turn a collective that failed (a peer died) or timed out into a
        :class:`ProcessGroupError`; ``where()`` says what this rank was doing."""
        self._where = where
        try:
            yield
        except BaseException as err:
            self._reported = True  # this rank reports its own failure; a SIGTERM now just ends it
            if self.world > 1 and isinstance(err, RuntimeError) and _is_collective_failure(err):
                raise ProcessGroupError(self._describe_failure(err, where())) from None
            raise

    def _on_sigterm(self, signum: int, frame) -> None:
        """torchrun stops every rank with SIGTERM once one has failed: say so, then die of it (no
        unwinding: what is on disk is exactly what a plain SIGTERM would have left)."""
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if not self._reported:
            line = (
                f"rank {self.rank} of {self.world}: stopped by SIGTERM (torchrun sends it to every rank once "
                f"one has failed; its summary names that rank), {self._where()}. Run the same command again to resume\n"
            )
            os.write(2, line.encode())
        os.kill(os.getpid(), signal.SIGTERM)

    def _describe_failure(self, err: RuntimeError, where: str) -> str:
        others = [r for r in range(self.world) if r != self.rank]
        peer = f"rank {others[0]}" if len(others) == 1 else "another rank"
        text = str(err)
        if "timed out" in text.lower() or "timeout" in text.lower():
            what = (
                f"{peer} did not answer within the process group's timeout ({self.timeout_minutes:g} min, "
                "--timeout-minutes): it hangs, or is slower than that at something the others wait for"
            )
        else:
            what = f"lost the connection to {peer} (it died or was killed; torchrun's summary names it)"
        return f"rank {self.rank} of {self.world}: {what}, {where}. Run the same command again to resume"

    # -- rank 0 sets up, the others receive -----------------------------------------------------
    @contextlib.contextmanager
    def leading(self) -> Iterator[None]:
        """Rank 0's set-up: an error raised inside before :meth:`lead` is sent to the ranks
        waiting in :meth:`follow` and then re-raised here, so every rank stops at once."""
        try:
            yield
        except BaseException as err:
            if self.world > 1 and not self._led:
                self._led = True
                with contextlib.suppress(Exception):  # the error to report is `err`, not this one
                    self._broadcast(("failed", _describe_error(err)))
            raise

    def lead(self, setup: Any) -> None:
        """Rank 0: send ``setup`` (any picklable object) to every other rank."""
        self._led = True
        if self.world > 1:
            self._broadcast(("ok", setup))

    def follow(self) -> Any:
        """Ranks > 0: what rank 0 sent with :meth:`lead`, or its set-up error."""
        status, payload = self._broadcast(None)
        if status != "ok":
            raise ProcessGroupError(f"rank {self.rank} of {self.world}: rank 0 stopped before training: {payload}")
        return payload

    def _broadcast(self, value: Any) -> Any:
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    # -- collectives (identity in one process) --------------------------------------------------
    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (float64), on every rank."""
        if self.world == 1:
            return values
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def max(self, value: float) -> float:
        """The largest ``value`` over ranks, on every rank."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor)

    def gather(self, value: Any) -> list | None:
        """Every rank's ``value`` (picklable), in rank order, on rank 0; None on the others."""
        if self.world == 1:
            return [value]
        import torch.distributed as dist

        out = [None] * self.world if self.main else None
        dist.gather_object(value, out, dst=0)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def data_parallel(self, model: nn.Module, device: torch.device | None = None) -> nn.Module:
        """``model`` wrapped in DistributedDataParallel (the module itself in one process), on this
        rank's GPU when ``device`` is one. Every parameter must get a gradient on every rank in
        every step (DDP all-reduces them all)."""
        if self.world == 1:
            return model
        if device is not None and device.type == "cuda":
            return nn.parallel.DistributedDataParallel(model, device_ids=[device], output_device=device)
        return nn.parallel.DistributedDataParallel(model)


def _watch_launcher(parent: int, ranks: Ranks, every_seconds: float = 0.25) -> None:
    """Stop this process once torchrun (``parent``) is gone (a new parent PID means it died),
    unless ``ranks`` is closed first."""
    while os.getppid() == parent:
        if ranks._closed.wait(every_seconds):
            return
    line = (
        f"rank {ranks.rank} of {ranks.world}: torchrun (PID {parent}) is gone, so this rank stops too, "
        f"{ranks._where()}. Run the same command again to resume\n"
    )
    with contextlib.suppress(OSError):  # stderr may have been a pipe that torchrun read
        os.write(2, line.encode())
    os._exit(1)


def _is_collective_failure(err: RuntimeError) -> bool:
    import torch.distributed as dist

    return isinstance(err, getattr(dist, "DistError", ())) or "gloo" in str(err).lower()


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:300]


def _describe_error(err: BaseException) -> str:
    """A user error's own message (it names the file and key); anything else by its type too."""
    if isinstance(err, (BackboneError, DataError)):
        return str(err)
    return f"{type(err).__name__}: {_first_line(err)}"
