"""WSD benchmark: the ELMo paper's nearest-sense-centroid method, a trained candidate classifier
and the frequency baselines, all on SemCor -> Raganato et al.'s (2017) five evaluation sets.

Every system is scored by tasks/metrics/wsd.py (Scorer.java's rules) per dataset, per POS and on
ALL; semeval2007 is the dev set (model selection of the classifier), ALL is reported. Lemmas
unseen in SemCor back off to WordNet's first sense in every system.

The backbone embeds SemCor (778k tokens) once per invocation: the centroid mixes, the
baselines and every classifier seed share those features (the trainer's feature cache). Each
classifier seed is an ordinary `elmo-tasks train` run directory, the centroid results land in
<out>/centroid/, so an interrupted benchmark resumes. Results go to docs/benchmarks.md.

    python benchmarks/wsd.py                                  # centroid mixes + baselines + 3 classifier seeds
    python benchmarks/wsd.py --methods centroid               # the ELMo paper's method only (no training)
    python benchmarks/wsd.py --limit 300 --seeds 1 --set backbone.name=null \\
        --set backbone.options=tiny/options.json --set backbone.weights=tiny/weights.hdf5   # smoke
    python benchmarks/wsd.py --report-only                    # aggregate what has finished
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from common import DOCS, REPO, commands, git_revision, machine, mean_std, record_command, run_threads, write_section

PUBLISHED = (
    "Published (ALL F1): ELMo paper (Peters et al. 2018, Table 5; original ELMo, nearest sense centroid on "
    "SemCor) 69.0 with the second biLM layer, 67.4 with the first; WordNet first sense 65.2 (Raganato et al. "
    "2017; the ELMo paper's table lists 65.9)."
)
DATASETS = ("senseval2", "senseval3", "semeval2007", "semeval2013", "semeval2015")
SHORT = {
    "senseval2": "SE2",
    "senseval3": "SE3",
    "semeval2007": "SE07 (dev)",
    "semeval2013": "SE13",
    "semeval2015": "SE15",
}
POS = ("NOUN", "VERB", "ADJ", "ADV")

FEATURE_CACHE: dict = {}
BACKBONE_CACHE: dict = {}


def load(config: Path, extra: list[str], seed: int | None = None):
    """The typed :class:`tasks.wsd.WsdConfig` of ``config`` with the ``--set`` overrides (and the seed)."""
    from data.config import parse_overrides
    from tasks.registry import load_task_config

    return load_task_config(config, parse_overrides(extra + ([f"train.seed={seed}"] if seed is not None else [])))


def run_centroids(config: Path, extra: list[str], out: Path) -> dict:
    """Features once, then every fixed mix and both baselines; cached in ``out/results.json``."""
    from tasks.experiments.wsd_centroid import prepare_task, run_centroid_method

    if (out / "results.json").is_file():
        return json.loads((out / "results.json").read_text())
    wsd_config = load(config, extra)
    print(f"== centroid -> {out}", flush=True)
    task, timings = prepare_task(wsd_config, progress=False, feature_cache=FEATURE_CACHE, backbone_cache=BACKBONE_CACHE)
    results = run_centroid_method(task, wsd_config.centroid.mixes, out)
    (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    return results


def run_classifier(config: Path, extra: list[str], seed: int, out: Path) -> dict:
    from tasks.trainer import Trainer

    if (out / "results.json").is_file():
        return json.loads((out / "results.json").read_text())
    print(f"== classifier seed {seed} -> {out}", flush=True)
    return Trainer(
        load(config, extra, seed), out, progress=False, feature_cache=FEATURE_CACHE, backbone_cache=BACKBONE_CACHE
    ).run()


def dataset_cells(runs: list[dict], deterministic: bool) -> list[str]:
    """SE2 .. SE15 (from the ALL test split), ALL, then ALL per POS: F1 in percent."""

    def cell(values: list[float]) -> str:
        if not values:
            return "–"
        return f"{values[0]:.1f}" if deterministic else mean_std(values)

    cells = [cell([r["test"]["by_dataset"][d]["f1"] for r in runs if d in r["test"]["by_dataset"]]) for d in DATASETS]
    cells.append(cell([r["test"]["f1"] for r in runs]))
    cells += [cell([r["test"]["by_pos"][p]["f1"] for r in runs if p in r["test"]["by_pos"]]) for p in POS]
    return cells


def backbone_of(out_root: Path) -> str | None:
    """The backbone the results under ``out_root`` were computed on, as their logs name it."""
    timings = out_root / "centroid" / "timings.json"
    if timings.is_file():
        return json.loads(timings.read_text()).get("backbone")
    for path in sorted(out_root.glob("classifier-seed*/results.json")):
        return json.loads(path.read_text()).get("backbone")
    return None


def report(out_root: Path, wall: float | None) -> str:
    header = ["system", "seeds", *(SHORT[d] for d in DATASETS), "**ALL**", *(f"ALL {p}" for p in POS)]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    notes = []
    centroid_file = out_root / "centroid" / "results.json"
    if centroid_file.is_file():
        centroid = json.loads(centroid_file.read_text())
        for name, result in centroid.items():
            lines.append(f"| {name} | – | " + " | ".join(dataset_cells([result], deterministic=True)) + " |")
        timings_file = out_root / "centroid" / "timings.json"
        if timings_file.is_file():
            timings = json.loads(timings_file.read_text())
            notes.append(
                f"Backbone: {timings['backbone']} ({timings['num_layers']} layers x {timings['dim']}). "
                f"ELMo features (once for every system below): "
                + ", ".join(f"{k} {v:.0f} s" for k, v in timings["features_seconds"].items())
                + f"; WordNet candidates {timings['vocab_seconds']:.0f} s; centroids + scoring "
                + ", ".join(f"{k.split(' ', 1)[1]} {v['seconds']:.0f} s" for k, v in centroid.items() if "seconds" in v)
                + "."
            )
    runs = [json.loads(p.read_text()) for p in sorted(out_root.glob("classifier-seed*/results.json"))]
    if runs:
        lines.append(
            f"| candidate classifier (learned mix) | {len(runs)} | " + " | ".join(dataset_cells(runs, False)) + " |"
        )
        mixes = [r["mix"]["s"] for r in runs if "mix" in r]
        notes.append(
            f"Classifier: {mean_std([r['seconds_per_epoch'] for r in runs])} s / epoch, "
            f"{mean_std([r['epochs_run'] for r in runs])} epochs (best {mean_std([r['best_epoch'] for r in runs])}), "
            f"{mean_std([r['train_seconds_total'] / 60 for r in runs])} min of training per seed"
            + (
                f"; learned layer weights s_j (mean over seeds) "
                f"{[round(statistics.mean(col), 3) for col in zip(*mixes)]}"
                if mixes
                else ""
            )
            + "."
        )
        unseen = runs[0]["test"].get("unseen_lemma_instances")
        if unseen is not None:
            notes.append(
                f"{unseen} of {runs[0]['test']['total']} ALL instances have a lemma + POS unseen in SemCor "
                f"and take WordNet's first sense in every system."
            )
    backbone = backbone_of(out_root)
    if backbone and backbone.startswith("named model '"):
        backbone = f"`{backbone.split(chr(39))[1]}`"  # named model 'default@v2' -> `default@v2`
    return (
        f"## Word sense disambiguation{f' on {backbone}' if backbone else ''} (`benchmarks/wsd.py`)\n\n"
        f"Command: {commands(out_root)}; git {git_revision()}.\n"
        f"Machine: {machine(run_threads(out_root))}.{f' Wall time of this invocation: {wall / 60:.1f} min.' if wall else ''}\n"
        f"Train on SemCor, select on semeval2007 (dev), report F1 (Scorer.java rules) on the five sets of "
        f"Raganato et al. (2017) and on ALL (their concatenation, semeval2007 included, as the framework "
        f"defines it). The classifier row is mean ± std over seeds; the other systems are deterministic.\n\n"
        + "\n".join(lines)
        + ("\n\n" + "\n\n".join(notes) if notes else "")
        + f"\n\n{PUBLISHED}\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "wsd.yaml")
    parser.add_argument("--methods", default="centroid,classifier", help="comma-separated: centroid, classifier")
    parser.add_argument("--seeds", type=int, default=3, help="classifier seeds")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-wsd")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every run")
    parser.add_argument("--limit", type=int, help="first N sentences of every split (smoke runs)")
    parser.add_argument("--report-only", action="store_true", help="only aggregate the finished runs under --out")
    parser.add_argument("--doc", type=Path, default=DOCS / "benchmarks.md", help="markdown file to update")
    parser.add_argument(
        "--section", default="wsd", help="the section of --doc to (re)write (<!-- NAME:start --> ... <!-- NAME:end -->)"
    )
    args = parser.parse_args()
    extra = args.set + ([f"data.limit={args.limit}"] if args.limit else [])
    methods = args.methods.split(",")
    unknown = set(methods) - {"centroid", "classifier"}
    if unknown:
        parser.error(f"unknown method(s): {', '.join(sorted(unknown))}")
    started = time.perf_counter()
    if not args.report_only:
        record_command(args.out)
        if "centroid" in methods:
            results = run_centroids(args.config, extra, args.out / "centroid")
            for name, result in results.items():
                print(f"{name}: dev F1 {result['dev']['f1']:.1f}, ALL F1 {result['test']['f1']:.1f}", flush=True)
        if "classifier" in methods:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                result = run_classifier(args.config, extra, seed, args.out / f"classifier-seed{seed}")
                print(
                    f"classifier seed {seed}: dev F1 {result['dev']['f1']:.1f}, ALL F1 {result['test']['f1']:.1f}",
                    flush=True,
                )
    text = report(args.out, None if args.report_only else time.perf_counter() - started)
    print(text)
    write_section(args.doc, args.section, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
