"""Pretraining's device and precision (#16 item 3): the config and CLI checks run everywhere; the
tests marked ``gpu`` run on a machine with a CUDA GPU (benchmarks/gpu_check.sh) and are skipped,
with their reason, elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_pretrain_config import TINY, corpora, problems_of, tiny, write_corpus  # noqa: F401 (fixture)

from elmo_core import distributed
from elmo_core.char_ids import batch_to_ids
from elmo_core.errors import BackboneUsageError
from elmo_core.loading import load_bilm
from elmo_core.pretrain import Pretrainer
from tasks.cli import main

REPO = Path(__file__).resolve().parents[1]
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.sh)")


def weights_of(out: Path) -> dict[str, torch.Tensor]:
    return {k: v.float().cpu() for k, v in torch.load(out / "checkpoint.pt", weights_only=True)["model"].items()}


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# -- checked everywhere -------------------------------------------------------------------------------
def test_device_and_precision_are_checked_with_the_rest_of_the_config():
    assert "device: expected cpu, cuda or cuda:N, found 'gpu'" in problems_of(overrides={"device": "gpu"})
    (fp16,) = problems_of(overrides={"precision": "fp16"})
    assert fp16.startswith("precision: fp16 trains on a GPU only (device: cuda), found device 'cpu'")
    assert tiny(device="cuda:1", precision="fp16").device == "cuda:1"  # a GPU config is valid anywhere


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_a_gpu_fails_before_any_corpus_is_read(tmp_path, capsys):
    out = tmp_path / "run"
    config = tiny(device="cuda")
    with pytest.raises(BackboneUsageError, match=r"device 'cuda': (this PyTorch is a CPU-only build|no CUDA GPU)"):
        Pretrainer(config, tmp_path / "absent.txt", tmp_path / "absent.txt", out, progress=False).run()
    assert not out.exists()  # refused before the run directory was touched
    argv = ["pretrain", "--config", str(TINY), "--train", str(tmp_path / "absent.txt")]
    argv += ["--heldout", str(tmp_path / "absent.txt"), "--out", str(out), "--quiet", "--device", "cuda"]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "device 'cuda'" in err and "--device cpu" in err and "absent.txt" not in err


def test_cli_precision_flag_reaches_the_config(tmp_path, capsys, corpora):  # noqa: F811
    train, heldout = corpora
    argv = ["pretrain", "--config", str(TINY), "--train", str(train), "--heldout", str(heldout)]
    argv += ["--out", str(tmp_path / "run"), "--quiet", "--precision", "fp16", "--device", "cpu"]
    assert main(argv) != 0
    assert "precision: fp16 trains on a GPU only" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_result_and_checkpoint_record_the_device(tmp_path, corpora):  # noqa: F811
    train, heldout = corpora
    out = tmp_path / "run"
    result = Pretrainer(tiny(), train, heldout, out, progress=False).run()
    assert result["device"] == "cpu"
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["device"] == "cpu" and state["cuda_rng"] is None and state["grad_scaler"] is None


def test_a_gpu_checkpoint_resumes_on_the_cpu_and_says_so(tmp_path, corpora):  # noqa: F811
    """What a GPU run leaves (device cuda:0, the GPU's generator state) resumes on a CPU: the device
    is resumable, and the run says that dropout masks now come from the CPU's generator."""
    train, heldout = corpora
    out = tmp_path / "run"
    Pretrainer(tiny(dropout=0.1), train, heldout, out, progress=False).run()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    first = state["position"]["step"]
    state.update(device="cuda:0", cuda_rng=torch.zeros(16, dtype=torch.uint8))
    state["config"]["device"] = "cuda"
    torch.save(state, out / "checkpoint.pt")
    lines: list[str] = []
    result = Pretrainer(
        tiny(dropout=0.1, max_tokens_seen=900), train, heldout, out, progress=False, log=lines.append
    ).run()
    assert result["step"] > first and result["device"] == "cpu"
    assert any("written on cuda, resumed on cpu" in line and "dropout masks" in line for line in lines), lines


def test_torchrun_on_gpus_joins_gloo_and_nccl_in_one_group(monkeypatch):
    """DDP's GPU gradients need NCCL; the trainer's own collectives (objects, CPU tensors) stay on gloo."""
    import torch.distributed as dist

    joined = {}
    monkeypatch.setattr(dist, "is_nccl_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, timeout: joined.update(backend=backend))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    for device_type, backend in (("cuda", "cpu:gloo,cuda:nccl"), ("cpu", "gloo")):
        ranks = distributed.Ranks._join(1, 2, 5.0, device_type)
        ranks.owns_group = False  # nothing was really joined: close() only restores SIGTERM's handler
        ranks.close()
        assert joined["backend"] == backend
    monkeypatch.setattr(dist, "is_nccl_available", lambda: False)
    with pytest.raises(distributed.ProcessGroupError, match="no NCCL"):
        distributed.Ranks._join(1, 2, 5.0, "cuda")


# -- on a GPU -------------------------------------------------------------------------------------------
@needs_gpu
def test_gpu_fp32_training_matches_the_cpu(tmp_path, corpora):  # noqa: F811
    train, heldout = corpora
    cpu = Pretrainer(tiny(dropout=0.0), train, heldout, tmp_path / "cpu", progress=False).run()
    gpu = Pretrainer(tiny(dropout=0.0, device="cuda"), train, heldout, tmp_path / "gpu", progress=False).run()
    assert gpu["device"].startswith("cuda:0 (") and gpu["step"] == cpu["step"]
    assert gpu["mean_ppl"] == pytest.approx(cpu["mean_ppl"], rel=1e-4)
    assert max_difference(weights_of(tmp_path / "cpu"), weights_of(tmp_path / "gpu")) < 1e-4


@needs_gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_gpu_reduced_precision_trains_close_to_fp32(tmp_path, corpora, precision):  # noqa: F811
    train, heldout = corpora
    fp32 = Pretrainer(tiny(device="cuda"), train, heldout, tmp_path / "fp32", progress=False).run()
    run = Pretrainer(tiny(device="cuda", precision=precision), train, heldout, tmp_path / "run", progress=False).run()
    assert run["precision"] == precision
    assert run["mean_ppl"] == pytest.approx(fp32["mean_ppl"], rel=0.05)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert (state["grad_scaler"] is not None) == (precision == "fp16")
    assert state["cuda_rng"] is not None


@needs_gpu
def test_gpu_run_resumes_on_the_gpu_and_moves_to_the_cpu(tmp_path, corpora):  # noqa: F811
    train, heldout = corpora
    whole = Pretrainer(tiny(device="cuda", max_tokens_seen=900), train, heldout, tmp_path / "whole", progress=False)
    whole = whole.run()
    out = tmp_path / "resumed"
    Pretrainer(tiny(device="cuda", max_tokens_seen=450), train, heldout, out, progress=False).run()
    resumed = Pretrainer(tiny(device="cuda", max_tokens_seen=900), train, heldout, out, progress=False).run()
    assert resumed["step"] == whole["step"]
    # dropout masks continue from the saved GPU generator; the GPU's atomic adds reorder float sums
    assert resumed["mean_ppl"] == pytest.approx(whole["mean_ppl"], rel=1e-4)
    on_cpu = Pretrainer(tiny(device="cpu", max_tokens_seen=1300), train, heldout, out, progress=False).run()
    assert on_cpu["device"] == "cpu" and on_cpu["step"] > resumed["step"]


@needs_gpu
def test_gpu_export_loads_and_embeds_on_the_cpu(tmp_path, corpora):  # noqa: F811
    train, heldout = corpora
    out = tmp_path / "run"
    Pretrainer(tiny(device="cuda", precision="bf16"), train, heldout, out, progress=False).run()
    bilm = load_bilm(options=out / "options.json", weights=out / "weights.hdf5")
    with torch.no_grad():
        layers = bilm(batch_to_ids([["the", "dog", "barks"]])).layers
    assert layers.shape[:3] == (3, 1, 3) and torch.isfinite(layers).all()
    softmax = torch.load(out / "softmax.pt", weights_only=True)  # no map_location: saved on the CPU
    assert all(t.device.type == "cpu" for t in softmax["state_dict"].values())


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs (NCCL runs one process per GPU)")
def test_torchrun_on_two_gpus_equals_one_process(tmp_path):
    train = write_corpus(tmp_path / "train.txt", 200)
    heldout = write_corpus(tmp_path / "heldout.txt", 20, seed=1)
    common = ["--config", str(TINY), "--train", str(train), "--heldout", str(heldout), "--quiet"]
    common += ["--device", "cuda", "--set", "dropout=0", "--set", "max_tokens_seen=500"]
    one = main(["pretrain", *common, "--out", str(tmp_path / "one")])
    assert one == 0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "tasks.cli"]
    done = subprocess.run(
        [*launch, "pretrain", *common, "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert max_difference(weights_of(tmp_path / "one"), weights_of(tmp_path / "two")) < 1e-4


def test_the_loss_scale_path_changes_nothing_but_the_checkpoint(tmp_path, corpora, monkeypatch):  # noqa: F811
    """fp16's machinery without a GPU: the trainer with its loss scaler forced on (fp32 math, on the
    CPU) gives bit for bit the plain run's weights, since the scale is a power of two; the scale is
    checkpointed, and a resumed run restores it and continues as the uninterrupted one."""
    train, heldout = corpora
    Pretrainer(tiny(), train, heldout, tmp_path / "plain", progress=False).run()
    real = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled=True: real(device, enabled=True))
    Pretrainer(tiny(), train, heldout, tmp_path / "scaled", progress=False).run()
    plain, scaled = weights_of(tmp_path / "plain"), weights_of(tmp_path / "scaled")
    assert all(torch.equal(plain[k], scaled[k]) for k in plain)
    saved = torch.load(tmp_path / "scaled" / "checkpoint.pt", weights_only=True)["grad_scaler"]
    first_steps = torch.load(tmp_path / "scaled" / "checkpoint.pt", weights_only=True)["position"]["step"]
    assert saved["scale"] == 65536.0 and saved["_growth_tracker"] == first_steps  # no overflow, no growth yet
    whole = Pretrainer(tiny(max_tokens_seen=900), train, heldout, tmp_path / "scaled", progress=False).run()
    Pretrainer(tiny(max_tokens_seen=900), train, heldout, tmp_path / "plain", progress=False).run()
    resumed = torch.load(tmp_path / "scaled" / "checkpoint.pt", weights_only=True)["grad_scaler"]
    assert whole["step"] > first_steps and resumed["_growth_tracker"] == whole["step"]  # restored, then counted on
    plain, scaled = weights_of(tmp_path / "plain"), weights_of(tmp_path / "scaled")
    assert all(torch.equal(plain[k], scaled[k]) for k in plain)
