"""benchmarks/ship_default_backbone.py: a finished pretraining run becomes the package's default,
with its model card; the previous card and curve are kept beside it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from elmo_core import load_bilm
from elmo_core.io import file_sha256
from elmo_core.pretrain import Pretrainer, load_pretrain_config

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "ship_default_backbone.py"
WORDS = "the a dog cat bark barks tree oak rough sharp let out of was ancient".split()


def corpus(path: Path, n: int) -> Path:
    g = torch.Generator().manual_seed(n)
    lines = [" ".join(WORDS[i] for i in torch.randint(len(WORDS), (3 + k % 7,), generator=g)) for k in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_run_is_shipped_with_its_card_and_the_previous_card_is_kept(tmp_path):
    run = tmp_path / "run"
    cfg = load_pretrain_config(
        REPO / "configs" / "bilm_tiny.yaml",
        {"max_tokens_seen": 400, "eval_every": 5, "lr_schedule": "cosine", "lr_final_ratio": 0.05},
    )
    Pretrainer(cfg, corpus(tmp_path / "t.txt", 100), corpus(tmp_path / "h.txt", 10), run, progress=False).run()
    docs, target = tmp_path / "docs", tmp_path / "pkg" / "default"
    docs.mkdir()
    (docs / "default_backbone.md").write_text(
        "# Model card: elmo-tasks `default` backbone\n\nold ppl 150.7\n\n![c](pretraining_curve.png)\n"
    )
    (docs / "pretraining_curve.png").write_bytes(b"old curve")
    done = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            run,
            "--train-command",
            "elmo-tasks pretrain ...",
            "--corpus-note",
            "a toy corpus",
            "--schedule-note",
            "re-planned once",
            "--previous-card",
            docs / "default_backbone_v1.md",
            "--target",
            target,
            "--docs",
            docs,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    card = (docs / "default_backbone.md").read_text()
    assert "cosine decay to 0.05× over 0.0004M tokens" in card and "(re-planned once)" in card
    assert "a toy corpus" in card and "[default_backbone_v1.md](default_backbone_v1.md)" in card
    kept = (docs / "default_backbone_v1.md").read_text()
    assert kept.startswith("# Model card: the previous `default` backbone") and "old ppl 150.7" in kept
    assert "](default_backbone_v1_curve.png)" in kept
    assert (docs / "default_backbone_v1_curve.png").read_bytes() == b"old curve"
    assert (docs / "pretraining_curve.png").read_bytes() != b"old curve"
    assert (target / "weights.hdf5").read_bytes() == (run / "weights.hdf5").read_bytes()
    bilm = load_bilm(options=target / "options.json", weights=target / "weights.hdf5")
    params = sum(p.numel() for p in bilm.parameters())
    assert f"{params / 1e6:.2f} M" in card
    assert (target / "MODEL_CARD.md").is_file()
    assert card.startswith("# Model card: elmo-tasks `default` backbone (`default@v1`)")  # the first release here
    (shipped,) = json.loads((target.parent / "versions.json").read_text())["default"]
    assert shipped["version"] == "v1" and shipped["weights_sha256"] == file_sha256(run / "weights.hdf5")
