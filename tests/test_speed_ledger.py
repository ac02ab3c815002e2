"""benchmarks/speed_ledger.py and backbone_speed.py's use of it: every side-by-side run is kept as
CSV rows, and issue #17's targets are counted across runs."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def benchmarks(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import backbone_speed
    import speed_ledger

    return speed_ledger, backbone_speed


def run_row(model: str, implementation: str, ratio: float | None, **extra) -> dict:
    return {"cpu": "CPU X (AVX2)", "model": model, "implementation": implementation, "ratio": ratio, **extra}


def test_appended_rows_read_back_with_numbers_and_one_header(benchmarks, tmp_path):
    ledger, _ = benchmarks
    path = tmp_path / "runs.csv"
    ledger.append(path, [run_row("small", "fp32", 6.25, lstm_share_best=0.48, source="run 1")])
    ledger.append(path, [run_row("small", "allennlp", None, tokens_per_s=688.0, source="run 2, a, comma")])
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(ledger.FIELDS) and sum(line.startswith("date,") for line in lines) == 1
    rows = ledger.read(path)
    assert [r["implementation"] for r in rows] == ["fp32", "allennlp"]
    assert rows[0]["ratio"] == 6.25 and rows[0]["lstm_share_best"] == 0.48 and rows[0]["lstm_share_paired"] is None
    assert rows[1]["tokens_per_s"] == 688.0 and rows[1]["source"] == "run 2, a, comma"
    assert ledger.read(tmp_path / "absent.csv") == []


def test_unknown_fields_are_refused(benchmarks, tmp_path):
    ledger, _ = benchmarks
    with pytest.raises(ValueError, match="speedup"):
        ledger.append(tmp_path / "runs.csv", [{"model": "small", "implementation": "fp32", "speedup": 6.0}])
    assert not (tmp_path / "runs.csv").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("model,ratio\nsmall,6\n", r"runs\.csv, line 1: expected the header date,session"),
        ("{header}\n,,,,,,small,fp32,,six,,,,,,x\n", r"line 2: ratio should be a number, found 'six'"),
        ("{header}\n,,,,,,small,fp32,,6\n", r"line 2: expected 16 fields"),
        ("{header}\n,,,,,,small,,,6,,,,,,x\n", r"line 2: model and implementation are required"),
    ],
)
def test_a_damaged_ledger_names_the_file_line_and_what_was_expected(benchmarks, tmp_path, content, message):
    ledger, _ = benchmarks
    path = tmp_path / "runs.csv"
    path.write_text(content.format(header=",".join(ledger.FIELDS)))
    with pytest.raises(ledger.LedgerError, match=message):
        ledger.read(path)


def test_summary_counts_the_runs_that_meet_each_target(benchmarks, tmp_path):
    ledger, _ = benchmarks
    path = tmp_path / "runs.csv"
    ledger.append(
        path,
        [
            run_row("small", "allennlp", None, tokens_per_s=650.0),
            run_row("small", "fp32", 5.9),
            run_row("small", "fp32", 6.0),
            run_row("small", "fp32", 6.4),
            run_row("original", "fp32", 3.5, lstm_share_best=0.69, lstm_share_paired=0.74),
            run_row("original", "fp32", 2.4, lstm_share_best=0.71),
            run_row("original", "int8", 4.8, lstm_share_best=0.9),
        ],
    )
    table = ledger.summary(ledger.read(path)).splitlines()
    assert len(table) == 2 + 3  # header, rule, one line per (CPU, model, ours); AllenNLP's own rows left out
    small, original, int8 = table[2:]
    assert "| small | fp32 | 3 | **6.00x** (5.90–6.40) | 2 of 3 (≥ 6x) |" in small
    assert (
        "| original | fp32 | 2 | **2.95x** (2.40–3.50) | 1 of 2 (≥ 2.5x) | 70 % (2) / 74 % (1) | 1 of 2 / 1 of 1 |"
        in original
    )
    assert "| original | int8 | 1 | **4.80x** (4.80–4.80) | – |" in int8 and int8.endswith("| – |")


def test_a_runs_ledger_rows_carry_its_ratios_and_shares(benchmarks):
    _, speed = benchmarks
    rows = [
        {"model": "small", "path": "allennlp", "tokens": 100, "tokens_per_s": [100.0, 110.0, 90.0]},
        {
            "model": "small",
            "path": "fp32",
            "tokens": 100,
            "tokens_per_s": [600.0, 700.0, 630.0],
            "diff": 1.2e-5,
            "lstm_gflops": 60.0,
            "lstm_share": 0.5,
        },
    ]
    ledger_rows = speed.ledger_rows(rows, {"fp32": 120.0}, {"threads": 2, "repeats": 3, "session": "15"})
    anchor, ours = ledger_rows
    assert anchor["implementation"] == "allennlp" and anchor["tokens_per_s"] == 100.0 and anchor["ratio"] is None
    assert ours["ratio"] == pytest.approx(6.3)  # median 630 / median 100
    assert (ours["paired_min"], ours["paired_max"]) == pytest.approx((6.0, 7.0))  # 600/100, 630/90, 700/110
    assert ours["lstm_share_best"] == pytest.approx(0.5) and ours["lstm_share_paired"] == 0.5
    assert ours["max_diff"] == 1.2e-5 and ours["session"] == "15" and ours["repeats"] == 3
    assert ours["date"] and ours["git"] and "(" in ours["cpu"]


def test_the_committed_ledger_reads(benchmarks):
    ledger, _ = benchmarks
    rows = ledger.read(REPO / "docs" / "backbone_speed_runs.csv")
    assert rows and {r["model"] for r in rows} >= {"small", "original"}
    with (REPO / "docs" / "backbone_speed_runs.csv").open(newline="") as handle:
        assert all(len(line) == len(ledger.FIELDS) for line in csv.reader(handle))


def _repo_with_commits(path: Path, n: int) -> list[str]:
    """A git repository in ``path`` with ``n`` commits one after the other; their hashes."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    subprocess.run(["git", "init", "-q", str(path)], check=True, env=env)
    hashes = []
    for k in range(n):
        subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", f"c{k}"], cwd=path, check=True, env=env)
        hashes.append(
            subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True).stdout.strip()
        )
    return hashes


def test_since_keeps_a_revision_and_its_descendants_and_says_what_it_left_out(benchmarks, tmp_path):
    ledger, _ = benchmarks
    first, middle, last = _repo_with_commits(tmp_path / "repo", 3)
    rows = [
        run_row("small", "fp32", 5.0, git=first[:7]),
        run_row("small", "fp32", 6.5, git=middle[:7]),
        run_row("small", "fp32", 7.0, git=f"{last[:7]} + uncommitted changes"),
        run_row("small", "fp32", 9.0, git="0123abc"),
        run_row("small", "fp32", 9.5, git=""),
    ]
    kept, notes = ledger.since(rows, middle[:7], repo=tmp_path / "repo")
    assert [row["ratio"] for row in kept] == [6.5, 7.0]
    assert notes == ["1 rows left out: no revision recorded", "1 rows left out: revision 0123abc unknown to git"]
    with pytest.raises(ledger.LedgerError, match="not a commit git knows"):
        ledger.since(rows, "fedcba9", repo=tmp_path / "repo")


def test_since_on_the_command_line(benchmarks, tmp_path, capsys):
    ledger, _ = benchmarks
    path = tmp_path / "runs.csv"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    ledger.append(path, [run_row("small", "fp32", 6.5, git=head[:7], date="2026-12-02")])
    assert ledger.main(["--ledger", str(path), "--since", "HEAD"]) == 0
    assert "| small | fp32 | 1 | **6.50x**" in capsys.readouterr().out
    assert ledger.main(["--ledger", str(path), "--since", "no-such-revision"]) == 2
    assert "not a commit git knows" in capsys.readouterr().err
