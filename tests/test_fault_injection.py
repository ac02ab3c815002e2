"""`kill -9` at random points of `embed --store`, `train` and `pretrain`, then a resume: the result equals
an uninterrupted run bit for bit (benchmarks/fault_injection.py in its quick mode: 3 points a verb,
about 2-3 minutes on one thread; the full run, 20 points a verb, writes docs/benchmarks.md)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from helpers import REPO


@pytest.mark.slow
def test_resumed_runs_equal_uninterrupted_runs_after_kill_9(tmp_path):
    done = subprocess.run(
        [sys.executable, "benchmarks/fault_injection.py", "--quick", "--workdir", str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = re.findall(
        r"^\| `elmo-tasks (\w+) .*\| (\d+) \| (\d+) / (\d+) / (\d+) \| (\d+) \| (\d+) \|$", done.stdout, re.M
    )
    assert [row[0] for row in rows] == ["embed", "train", "pretrain"], done.stdout[-3000:]
    for verb, points, before, during, after, equal, mismatches in rows:
        assert int(points) == 3 == int(before) + int(during) + int(after) == int(equal), verb
        assert int(mismatches) == 0, verb
    assert not list(tmp_path.iterdir())  # the script cleans up after itself
