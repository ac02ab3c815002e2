"""Shared helpers for benchmarks: machine description, mean ± std, writing a section of a doc."""

from __future__ import annotations

import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def machine(threads: str | None = None) -> str:
    """The machine line of a report. ``threads`` says what thread count the measured work ran with
    when it was not this process's (a report of runs trained earlier, see :func:`run_threads`);
    by default, torch's thread count now."""
    import torch

    return (
        f"{cpu_label()}, {os.cpu_count()} cores visible, torch {torch.__version__} ({threads or f'{torch.get_num_threads()} threads'}), "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def cpu_label() -> str:
    """The CPU's model name and its widest vector units, e.g. "AMD EPYC (AVX2)"."""
    from elmo_core.hardware import vector_units

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} ({vector_units()})"


def run_threads(*out_roots: Path) -> str | None:
    """The thread counts the run directories under ``out_roots`` trained with (``train.threads`` of
    their config.yaml), e.g. "runs trained with 1 thread each"; None when no run says."""
    import yaml

    counts = set()
    for out_root in out_roots:
        for path in Path(out_root).glob("*/config.yaml"):
            train = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("train") or {}
            if isinstance(train.get("threads"), int):
                counts.add(train["threads"])
    if not counts:
        return None
    shown = " or ".join(str(n) for n in sorted(counts))
    return f"runs trained with {shown} thread{'' if counts == {1} else 's'} each"


def command_line() -> str:
    return shlex.join([Path(sys.executable).name, *sys.argv])


def mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def git_revision() -> str:
    """HEAD's short hash, marked when tracked source files differ from it (docs/ excluded: the
    benchmarks write there)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head} + uncommitted changes" if changed else head


def write_section(doc: Path, name: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- name -->`` markers in ``doc``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    text = (
        doc.read_text()
        if doc.exists()
        else "# Benchmarks\n\nEvery table below was written by the script named in it.\n\n"
    )
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def commands(out_root: Path) -> str:
    """The command(s) that made the runs under ``out_root`` (recorded by each invocation), else this one."""
    recorded = out_root / "commands.txt"
    lines = recorded.read_text().splitlines() if recorded.is_file() else []
    return " then ".join(f"`{line}`" for line in dict.fromkeys(lines)) or f"`{command_line()}`"


def record_command(out_root: Path) -> None:
    out_root.mkdir(parents=True, exist_ok=True)
    with (out_root / "commands.txt").open("a") as handle:
        handle.write(command_line() + "\n")


GEMM_LIBRARIES = ("mkl", "onednn")


def gemm_peak_gflops(
    dtype=None, size: int = 2048, repeats: int = 6, clock=None, device="cpu", library: str = "mkl"
) -> float:
    """This machine's GEMM rate (best of ``repeats`` ``size``^3 products) in GFLOP/s, at the
    current torch thread count; ``dtype`` defaults to float32, ``clock`` to ``time.perf_counter``
    (``time.process_time`` times by the process's CPU time, for loaded machines). ``library``:
    ``"mkl"`` times ``torch.mm`` (MKL on x86 CPUs), ``"onednn"`` oneDNN's linear with a weight
    packed beforehand (``elmo_core/onednn.py``, what the fp32 LSTM step uses; CPU only). On a GPU
    (``device="cuda"``) each product is timed to its end (synchronised); pass a larger ``size``
    there (8192), where 2048^3 is too small to fill the chip."""
    import time

    import torch

    if library not in GEMM_LIBRARIES:
        raise ValueError(f"library must be one of {GEMM_LIBRARIES}, got {library!r}")
    dtype = dtype or torch.float32
    clock = clock or time.perf_counter
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    if library == "onednn":
        from elmo_core import onednn

        packed = onednn.pack_weight(b)

        def product():
            return onednn.linear(a, packed)
    else:

        def product():
            return torch.mm(a, b)

    product()
    sync()
    best = float("inf")
    for _ in range(repeats):
        started = clock()
        product()
        sync()
        best = min(best, clock() - started)
    return 2 * size**3 / best / 1e9


def fp32_cpu_peak_gflops(repeats: int = 6) -> dict[str, float]:
    """The fp32 square-GEMM rate of each library this PyTorch has on the CPU (``{"mkl": ..., "onednn": ...}``):
    the LSTM uses both, so its share is taken of the better one."""
    from elmo_core import onednn

    libraries = [lib for lib in GEMM_LIBRARIES if lib == "mkl" or onednn.available()]
    return {lib: gemm_peak_gflops(repeats=repeats, library=lib) for lib in libraries}
