"""benchmarks/pretraining_progress.py: a long run's heldout perplexity from its own log, beside the
shipped default's, as a table and a plot (the run may still be going)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "pretraining_progress.py"
HEADER = "step,tokens_seen,seconds,train_loss,tokens_per_s,forward_ppl,backward_ppl,mean_ppl\n"


def fake_run(path: Path) -> Path:
    path.mkdir()
    (path / "log.csv").write_text(
        HEADER + "400,1000000,500.0,6.1,2000.0,300.0,280.0,290.0\n800,2000000,1000.0,5.5,2000.0,205.0,195.0,200.0\n"
    )
    lstm = {"dim": 1024, "projection_dim": 128}
    config = {"model": {"lstm": lstm}, "precision": "bf16", "lr": 0.002, "lr_schedule": "cosine"}
    (path / "config.json").write_text(json.dumps({**config, "heldout_sentences": 1000}))
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True, cwd=REPO)


def test_a_run_gets_its_row_and_plot_beside_the_default(tmp_path):
    doc, plot = tmp_path / "pretraining.md", tmp_path / "progress.png"
    done = run(fake_run(tmp_path / "bilm_x"), "--doc", doc, "--plot", plot, "--no-copy-logs")
    assert done.returncode == 0, done.stderr
    text = doc.read_text()
    assert "<!-- pretraining-progress:start -->" in text
    assert "| `bilm_x` | LSTM 1024/128 | bf16 | 0.002 cosine | 2.00M | 0.28 | 2,000 | 200.0 | 200.0 |" in text
    assert "| first `default` (v1) | LSTM 512/128 |" in text
    assert plot.stat().st_size > 10_000


def test_a_directory_without_a_log_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    done = run(tmp_path / "empty", "--doc", tmp_path / "d.md", "--plot", tmp_path / "p.png")
    assert done.returncode == 2 and f"{tmp_path / 'empty'}: no log.csv" in done.stderr
    assert not (tmp_path / "d.md").exists()
