"""benchmarks/common.py: a report's machine line names the thread count its runs trained with,
not the reporting process's (a --report-only report of runs trained earlier)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def common():
    spec = importlib.util.spec_from_file_location("benchmarks_common", REPO / "benchmarks" / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_run(root: Path, name: str, train: dict | None) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "config.yaml").write_text(yaml.safe_dump({"task": "ner", **({"train": train} if train else {})}))


def test_run_threads_reads_the_runs_configs(common, tmp_path):
    write_run(tmp_path / "a", "glove-seed1", {"threads": 1})
    write_run(tmp_path / "a", "glove-seed2", {"threads": 1})
    assert common.run_threads(tmp_path / "a") == "runs trained with 1 thread each"
    write_run(tmp_path / "b", "elmo-seed1", {"threads": 2})
    write_run(tmp_path / "b", "no-threads", {"epochs": 3})
    assert common.run_threads(tmp_path / "a", tmp_path / "b") == "runs trained with 1 or 2 threads each"
    assert common.run_threads(tmp_path / "empty") is None


def test_machine_line_names_the_given_threads_or_torchs_own(common):
    assert "(runs trained with 1 thread each)" in common.machine("runs trained with 1 thread each")
    assert f"({torch.get_num_threads()} threads)" in common.machine()


def test_machine_line_names_the_cpus_vector_units(common):
    from elmo_core.hardware import vector_units

    assert f" ({vector_units()}), " in common.machine()


def test_vector_units_tell_machines_with_one_model_name_apart():
    from elmo_core.hardware import vector_units

    zen3 = frozenset({"sse4_2", "avx", "avx2", "fma"})
    assert vector_units(zen3) == "AVX2"
    assert vector_units(zen3 | {"avx512f", "avx512_bf16"}) == "AVX-512 + AVX512-BF16"
    assert vector_units(zen3 | {"avx512f", "avx512_bf16", "amx_bf16"}) == "AVX-512 + AMX"
    assert vector_units(zen3 | {"avx512f"}) == "AVX-512"
    assert vector_units(frozenset({"sse4_2"})) == "no AVX2"
    assert vector_units(frozenset()) == "unknown"


def test_fp32_peak_is_measured_per_gemm_library(common):
    """The LSTM's share is taken of the better library's square-GEMM rate: both are measured, and a
    wrong library name is refused rather than silently timing torch.mm."""
    from elmo_core import onednn

    peaks = common.fp32_cpu_peak_gflops()
    assert set(peaks) == ({"mkl", "onednn"} if onednn.available() else {"mkl"})
    assert all(rate > 0.5 for rate in peaks.values())  # GFLOP/s: any CPU that runs this suite
    with pytest.raises(ValueError, match="library must be one of"):
        common.gemm_peak_gflops(library="openblas")
