"""The run ledger of ``backbone_speed.py``: every side-by-side run, one CSV row per model and
implementation, and a summary across runs.

These machines drift by tens of percent within minutes, so one run of ≥ 5 interleaved passes can
land on either side of a target that it clears on average. The ledger keeps every run (with its
CPU, code revision and spread) so that a claim rests on how often a target is met across runs
and machines, not on the last run. Rows made before the ledger existed were copied from
docs/benchmarks.md, each naming where (``source``).

    python benchmarks/speed_ledger.py                  # the summary of docs/backbone_speed_runs.csv
    python benchmarks/speed_ledger.py --since c885777  # only runs of that commit or its descendants

``--since`` reads the targets for one version of the code and what came after it, where the plain
summary pools every version since the ledger began.
"""

from __future__ import annotations

import argparse
import csv
import functools
import statistics
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

FIELDS = (
    "date",  # ISO date of the run; empty for rows copied from earlier reports
    "session",  # the work session that ran it, where known
    "git",
    "cpu",  # model name and vector units, e.g. "AMD EPYC (AVX2)"
    "threads",
    "repeats",  # interleaved passes per row
    "model",  # small / original
    "implementation",  # allennlp, fp32, bf16, int8
    "tokens_per_s",  # median over passes
    "ratio",  # median ours / median AllenNLP's tokens/s
    "paired_min",  # the range of the pass-by-pass ratios
    "paired_max",
    "lstm_share_best",  # LSTM GFLOP/s over the run's best GEMM peak
    "lstm_share_paired",  # median over passes of the LSTM rate over the peak measured beside the pass
    "max_diff",  # max abs difference from AllenNLP's outputs
    "source",  # where the row comes from
)
LEDGER = Path(__file__).resolve().parents[1] / "docs" / "backbone_speed_runs.csv"
NUMBERS = ("tokens_per_s", "ratio", "paired_min", "paired_max", "lstm_share_best", "lstm_share_paired", "max_diff")

#: issue #17's fp32 targets: speed-up over AllenNLP per model, and the LSTM's share of the GEMM peak
RATIO_TARGETS = {("small", "fp32"): 6.0, ("original", "fp32"): 2.5}
SHARE_TARGETS = {("original", "fp32"): 0.70}


class LedgerError(ValueError):
    """A ledger file that cannot be read: the file, the line and what was expected."""


def read(path: Path) -> list[dict]:
    """The ledger's rows, numbers as floats (None where empty); ``[]`` when the file does not exist."""
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise LedgerError(f"{path}, line 1: expected the header {','.join(FIELDS)}, found {reader.fieldnames}")
        rows = []
        for row in reader:
            line = reader.line_num
            if None in row or any(value is None for value in row.values()):
                raise LedgerError(f"{path}, line {line}: expected {len(FIELDS)} fields")
            for key in NUMBERS:
                try:
                    row[key] = float(row[key]) if row[key] != "" else None
                except ValueError:
                    raise LedgerError(f"{path}, line {line}: {key} should be a number, found {row[key]!r}") from None
            if not row["model"] or not row["implementation"]:
                raise LedgerError(f"{path}, line {line}: model and implementation are required")
            rows.append(row)
    return rows


def append(path: Path, rows: Iterable[dict]) -> None:
    """Add ``rows`` (dicts with some of :data:`FIELDS`; the rest left empty) to the ledger, writing
    the header first if the file is new. Rows with other keys are refused before anything is written."""
    rows = list(rows)
    for row in rows:
        unknown = sorted(set(row) - set(FIELDS))
        if unknown:
            raise ValueError(f"not ledger fields: {', '.join(unknown)} (the fields are {', '.join(FIELDS)})")
    new = not path.exists() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerows({key: _cell(row.get(key)) for key in FIELDS} for row in rows)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary(rows: list[dict]) -> str:
    """Markdown: per CPU, model and implementation (AllenNLP itself left out), the runs, the median
    and range of their ratios, how many met the ratio target, and the LSTM's share likewise."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in rows:
        if row["implementation"] != "allennlp" and row["ratio"] is not None:
            groups.setdefault((row["cpu"], row["model"], row["implementation"]), []).append(row)
    lines = [
        "| CPU | model | ours | runs | speed-up vs AllenNLP: median of runs (min–max) | runs at or above the target "
        "| LSTM share of the GEMM peak, median of runs: of the best peak / paired | runs at or above 70 %: best / paired |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for (cpu, model, implementation), group in sorted(groups.items(), key=_order):
        ratios = [row["ratio"] for row in group]
        target = RATIO_TARGETS.get((model, implementation))
        met = f"{sum(r >= target for r in ratios)} of {len(ratios)} (≥ {target:g}x)" if target else "–"
        lines.append(
            f"| {cpu} | {model} | {implementation} | {len(group)} | **{statistics.median(ratios):.2f}x** "
            f"({min(ratios):.2f}–{max(ratios):.2f}) | {met} | {_shares(group)} | "
            f"{_shares_met(group, SHARE_TARGETS.get((model, implementation)))} |"
        )
    return "\n".join(lines)


def _order(item) -> tuple:
    (cpu, model, implementation), _ = item
    return cpu, ("small", "original").index(model) if model in ("small", "original") else 2, implementation


def _share_values(group: list[dict]) -> list[list[float]]:
    """The recorded LSTM shares of ``group``: of the best peak, and paired."""
    return [[row[key] for row in group if row[key] is not None] for key in ("lstm_share_best", "lstm_share_paired")]


def _shares(group: list[dict]) -> str:
    return " / ".join(
        f"{100 * statistics.median(values):.0f} % ({len(values)})" if values else "–" for values in _share_values(group)
    )


def _shares_met(group: list[dict], target: float | None) -> str:
    if target is None:
        return "–"
    return " / ".join(
        f"{sum(v >= target for v in values)} of {len(values)}" if values else "–" for values in _share_values(group)
    )


def since(rows: list[dict], base: str, repo: Path = LEDGER.parents[1]) -> tuple[list[dict], list[str]]:
    """The rows whose ``git`` revision is ``base`` or descends from it (by ``git merge-base
    --is-ancestor`` in ``repo``), and a note for each revision left out because git does not know
    it (a row copied from an old report, a shallow clone) or the row names none."""
    resolved = _commit(base, repo)
    if resolved is None:
        raise LedgerError(f"--since {base}: not a commit git knows in {repo}")
    kept, unknown = [], {}
    for row in rows:
        revision = row["git"].split()[0] if row["git"].strip() else ""
        commit = _commit(revision, repo) if revision else None
        if commit is None:
            unknown[revision] = unknown.get(revision, 0) + 1
        elif commit == resolved or _descends(commit, resolved, repo):
            kept.append(row)
    return kept, [
        f"{count} rows left out: " + (f"revision {name} unknown to git" if name else "no revision recorded")
        for name, count in sorted(unknown.items())
    ]


@functools.cache
def _commit(revision: str, repo: Path) -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], cwd=repo, capture_output=True, text=True
    )
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def _descends(commit: str, base: str, repo: Path) -> bool:
    return subprocess.run(["git", "merge-base", "--is-ancestor", base, commit], cwd=repo).returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Summarise the side-by-side runs of backbone_speed.py across runs.")
    parser.add_argument("--ledger", type=Path, default=LEDGER, help="the CSV to read (default: %(default)s)")
    parser.add_argument(
        "--since",
        metavar="REV",
        help="only runs of this commit or its descendants (a git revision: hash, tag, HEAD~3), "
        "to read the targets for the current code rather than every version",
    )
    args = parser.parse_args(argv)
    try:
        rows = read(args.ledger)
        notes: list[str] = []
        if args.since:
            rows, notes = since(rows, args.since)
    except LedgerError as error:
        print(f"speed_ledger: {error}", file=sys.stderr)
        return 2
    if args.since:
        print(f"Runs of git {args.since} and its descendants: {len({(r['date'], r['git']) for r in rows})} runs\n")
    print(summary(rows))
    for note in notes:
        print(f"* {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
