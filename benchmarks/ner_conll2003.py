"""CoNLL-2003 NER benchmark: ELMo + BiLSTM-CRF against the same tagger without ELMo.

Train on eng.train, select the epoch on eng.testa (dev), report eng.testb (test), over N seeds.
Each run is an ordinary `elmo-tasks train` run directory, so an interrupted benchmark resumes and
finished runs are not repeated. Results go to docs/benchmarks.md.

    python benchmarks/ner_conll2003.py --seeds 5                 # both variants
    python benchmarks/ner_conll2003.py --variants baseline        # only the no-ELMo tagger
    python benchmarks/ner_conll2003.py --report-only              # aggregate what has finished
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from common import DOCS, REPO, commands, git_revision, machine, mean_std, record_command, write_section

PUBLISHED = "Published (test F1): ELMo paper 92.22 ± 0.10 with baseline 90.15 (Peters et al. 2018, original 5.5B-token ELMo + GloVe); TagLM 91.93 (Peters et al. 2017)."
VARIANTS = {"elmo": ["model.elmo.enabled=true"], "baseline": ["model.elmo.enabled=false"]}


def run_one(config: Path, variant: str, seed: int, out_root: Path, extra: list[str]) -> dict:
    from data.config import parse_overrides
    from tasks.registry import load_task_config
    from tasks.trainer import Trainer

    out = out_root / f"{variant}-seed{seed}"
    if (out / "results.json").is_file():
        return json.loads((out / "results.json").read_text())
    overrides = parse_overrides(VARIANTS[variant] + [f"train.seed={seed}"] + extra)
    task_config = load_task_config(config, overrides)
    print(f"== {variant} seed {seed} -> {out}", flush=True)
    return Trainer(task_config, out, progress=False).run()


def int8_cost(run_dir: Path) -> dict:
    """Test scores of a trained ELMo run when the backbone runs int8 (same head, features recomputed)."""
    cached = run_dir / "int8_test.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    from tasks.run_dir import load_run

    trained = load_run(run_dir, precision="int8")
    test_path = trained.task.data_path("test")
    started = time.perf_counter()  # the backbone runs live (int8) inside predict_file
    split, predictions, _ = trained.predict_file(test_path, "labelled")
    scores = trained.task.score(split, predictions)
    scores.pop("report")
    result = {"f1": scores["f1"], "seconds": round(time.perf_counter() - started, 1)}
    cached.write_text(json.dumps(result) + "\n")
    return result


def collect(out_root: Path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for path in sorted(out_root.glob("*-seed*/results.json")):
        variant = path.parent.name.rsplit("-seed", 1)[0]
        found.setdefault(variant, []).append(json.loads(path.read_text()))
    return found


def report(out_root: Path, config: Path, extra: list[str], wall: float | None) -> str:
    found = collect(out_root)
    lines = [
        "| tagger | backbone | seeds | dev F1 | test F1 | test strict F1 | s / epoch | epochs | train time / run |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, runs in sorted(found.items()):
        backbone = runs[0].get("backbone") or "none (word emb. + char CNN only)"
        lines.append(
            f"| {'ELMo + BiLSTM-CRF' if variant == 'elmo' else 'BiLSTM-CRF (no ELMo)'} | {backbone} | {len(runs)} | "
            f"{mean_std([r['dev']['f1'] for r in runs])} | {mean_std([r['test']['f1'] for r in runs])} | "
            f"{mean_std([r['test']['strict_f1'] for r in runs])} | {mean_std([r['seconds_per_epoch'] for r in runs])} | "
            f"{mean_std([r['epochs_run'] for r in runs])} | {mean_std([r['train_seconds_total'] / 60 for r in runs])} min |"
        )
    if "elmo" in found and "baseline" in found:
        gain = statistics.mean(r["test"]["f1"] for r in found["elmo"]) - statistics.mean(
            r["test"]["f1"] for r in found["baseline"]
        )
        lines.append(f"\n**ELMo gain on test: {gain:+.2f} F1** (mean over seeds).")
    best = max((r for runs in found.values() for r in runs), key=lambda r: r["dev"]["f1"], default=None)
    per_type = ""
    if best:
        per_type = (
            "\n\nPer-type test scores of the run with the best dev F1:\n\n| type | precision | recall | F1 | gold |\n|---|---:|---:|---:|---:|\n"
            + "\n".join(
                f"| {t} | {s['precision']:.2f} | {s['recall']:.2f} | {s['f1']:.2f} | {s['gold']} |"
                for t, s in best["test"]["per_type"].items()
            )
        )
    int8_lines = ""
    int8_files = sorted(out_root.glob("elmo-seed*/int8_test.json"))
    if int8_files:
        pairs = [
            (json.loads(f.read_text())["f1"], json.loads((f.parent / "results.json").read_text())["test"]["f1"])
            for f in int8_files
        ]
        int8_lines = (
            f"\n\nint8 backbone (`--precision int8`, dynamic quantisation of the linear layers; heads trained on fp32 "
            f"features): test F1 {mean_std([a for a, _ in pairs])} vs fp32 {mean_std([b for _, b in pairs])}, "
            f"cost {statistics.mean(b - a for a, b in pairs):+.2f} F1 (mean over {len(pairs)} seeds)."
        )
    features = ""
    elmo_runs = found.get("elmo", [])
    if elmo_runs and "features_seconds" in elmo_runs[0]:
        features = f"\n\nELMo feature extraction (once per run, all splits): {mean_std([sum(r['features_seconds'].values()) for r in elmo_runs])} s."
    return (
        f"## CoNLL-2003 NER (`benchmarks/ner_conll2003.py`)\n\n"
        f"Command: {commands(out_root)} (config `{config.relative_to(REPO) if config.is_relative_to(REPO) else config}`"
        f"{', overrides ' + ' '.join(extra) if extra else ''}); git {git_revision()}.\n"
        f"Machine: {machine()}.{f' Wall time of this invocation: {wall / 60:.1f} min.' if wall else ''}\n"
        f"Train eng.train, model selection on eng.testa (dev), reported on eng.testb (test); conlleval span F1 "
        f"(mean ± std over seeds).\n\n" + "\n".join(lines) + per_type + features + int8_lines + f"\n\n{PUBLISHED}\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "ner_conll2003.yaml")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--variants", default="elmo,baseline")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-ner")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every run")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--int8", action="store_true", help="also score every ELMo run's test set with an int8 backbone"
    )
    parser.add_argument("--doc", type=Path, default=DOCS / "benchmarks.md", help="markdown file to update")
    args = parser.parse_args()
    started = time.perf_counter()
    if not args.report_only:
        record_command(args.out)
        for variant in args.variants.split(","):
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                result = run_one(args.config, variant, seed, args.out, args.set)
                print(
                    f"{variant} seed {seed}: dev F1 {result['dev']['f1']:.2f}, test F1 {result['test']['f1']:.2f}",
                    flush=True,
                )
    if args.int8:
        for run_dir in sorted(args.out.glob("elmo-seed*")):
            if (run_dir / "results.json").is_file():
                print(f"int8 {run_dir.name}: test F1 {int8_cost(run_dir)['f1']:.2f}", flush=True)
    text = report(args.out, args.config, args.set, None if args.report_only else time.perf_counter() - started)
    print(text)
    write_section(args.doc, "ner-conll2003", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
