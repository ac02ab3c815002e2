"""SST sentiment benchmark: ELMo + pooled BiLSTM classifier against the same classifier without ELMo.

Train on train.txt (root sentences; `--set data.phrases=true` trains on every labelled phrase of
the trees, the standard SST setting, with a separate --out), select the epoch
on dev, report test accuracy (and macro-F1) over N seeds. Each run is an ordinary
`elmo-tasks train` run directory, so an interrupted benchmark resumes and finished runs are not
repeated. The frozen backbone's features of a split are computed once per invocation and reused
by every seed of that task. Results go to docs/benchmarks.md.

    python benchmarks/sst.py --seeds 5                      # SST-5, both variants
    python benchmarks/sst.py --tasks sst5,sst2 --variants elmo
    python benchmarks/sst.py --limit 200 --seeds 1 --set backbone.name=null \\
        --set backbone.options=tiny/options.json --set backbone.weights=tiny/weights.hdf5   # smoke
    python benchmarks/sst.py --report-only                  # aggregate what has finished
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common import DOCS, REPO, commands, git_revision, machine, mean_std, record_command, run_threads, write_section

PUBLISHED = (
    "Published (SST-5 test accuracy, Peters et al. 2018, Table 1): BCN + ELMo (original 5.5B-token ELMo "
    "+ GloVe) 54.7 ± 0.5, their BCN baseline without ELMo 51.4; previous best CoVe (McCann et al. 2017) 53.7."
)
GLOVE = ["model.words.dim=50", "model.words.pretrained=glove.6B.50d", "model.words.fold_digits=false"]
VARIANTS = {
    "elmo": ["model.elmo.enabled=true"],
    # Without ELMo the classifier needs its own token inputs: learned word vectors + char CNN.
    "baseline": ["model.elmo.enabled=false", "model.words.dim=100", "model.chars.filters=30"],
    # The paper's protocol: ELMo *added* to the baseline's own inputs (as the NER tagger does).
    "elmo_inputs": ["model.elmo.enabled=true", "model.words.dim=100", "model.chars.filters=30"],
    # The published baselines start from pretrained vectors (BCN: 300-d GloVe 840B; here 50-d GloVe 6B).
    "glove": ["model.elmo.enabled=false", *GLOVE, "model.chars.filters=30"],
    "elmo_glove": ["model.elmo.enabled=true", *GLOVE, "model.chars.filters=30"],
}
LABELS = {
    "elmo": "ELMo only + BiLSTM pooled classifier",
    "baseline": "BiLSTM pooled classifier (no ELMo)",
    "elmo_inputs": "ELMo + word emb. + char CNN, BiLSTM pooled classifier",
    "glove": "BiLSTM pooled classifier + GloVe (no ELMo)",
    "elmo_glove": "ELMo + GloVe + char CNN, BiLSTM pooled classifier",
}


# The frozen backbone and the features of a split are the same for every seed of a task: one
# computation per invocation, shared through the trainer's caches.
FEATURE_CACHE: dict = {}
BACKBONE_CACHE: dict = {}


def run_one(task: str, config: Path, variant: str, seed: int, out_root: Path, extra: list[str]) -> dict:
    from data.config import parse_overrides
    from tasks.registry import load_task_config
    from tasks.trainer import Trainer

    out = out_root / f"{task}-{variant}-seed{seed}"
    if (out / "results.json").is_file():
        return json.loads((out / "results.json").read_text())
    overrides = parse_overrides(VARIANTS[variant] + [f"train.seed={seed}"] + extra)
    print(f"== {task} {variant} seed {seed} -> {out}", flush=True)
    return Trainer(
        load_task_config(config, overrides),
        out,
        progress=False,
        feature_cache=FEATURE_CACHE,
        backbone_cache=BACKBONE_CACHE,
    ).run()


def training_examples(run_dir: Path) -> str:
    """What a run trained on, from its saved config: the root sentences or every labelled phrase."""
    import yaml

    data = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("data", {})
    if not data.get("phrases"):
        return "root sentences"
    sample = data.get("phrase_sample", 1.0)
    return "all phrases" if sample == 1.0 else f"roots + {sample:.0%} of phrases"


def collect(out_roots: list[Path]) -> dict[tuple[str, str, str], list[dict]]:
    found: dict[tuple[str, str, str], list[dict]] = {}
    for out_root in out_roots:
        for path in sorted(out_root.glob("*-seed*/results.json")):
            task, variant = path.parent.name.rsplit("-seed", 1)[0].split("-", 1)
            key = (task, variant, training_examples(path.parent))
            found.setdefault(key, []).append(json.loads(path.read_text()))
    return found


def report(out_roots: list[Path], wall: float | None) -> str:
    found = collect(out_roots)
    lines = [
        "| task | classifier | train on | backbone | seeds | dev acc | test acc | test macro-F1 | s / epoch | epochs | "
        "ELMo features (s) | train time / run |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (task, variant, trained_on), runs in sorted(found.items()):
        features = [sum(r["features_seconds"].values()) for r in runs if "features_seconds" in r]
        lines.append(
            f"| {task.upper()} | {LABELS.get(variant, variant)} | {trained_on} | "
            f"{runs[0].get('backbone') or 'none (word emb. + char CNN)'} | "
            f"{len(runs)} | {mean_std([r['dev']['accuracy'] for r in runs])} | {mean_std([r['test']['accuracy'] for r in runs])} | "
            f"{mean_std([r['test']['macro_f1'] for r in runs])} | {mean_std([r['seconds_per_epoch'] for r in runs])} | "
            f"{mean_std([r['epochs_run'] for r in runs])} | {f'{max(features):.1f}' if features else '–'} | "
            f"{mean_std([r['train_seconds_total'] / 60 for r in runs])} min |"
        )
    gains = []
    for task, trained_on in sorted({(t, e) for t, _, e in found}):
        for variant, base in (("elmo", "baseline"), ("elmo_inputs", "baseline"), ("elmo_glove", "glove")):
            with_elmo, without = found.get((task, variant, trained_on)), found.get((task, base, trained_on))
            if with_elmo and without:
                gain = sum(r["test"]["accuracy"] for r in with_elmo) / len(with_elmo) - sum(
                    r["test"]["accuracy"] for r in without
                ) / len(without)
                gains.append(
                    f"**{LABELS[variant]} vs {LABELS[base]} on {task.upper()} test ({trained_on}): "
                    f"{gain:+.2f} accuracy** (mean over seeds)."
                )
    confusion = ""
    best = max(
        ((t, r) for (t, v, _), runs in found.items() if v.startswith("elmo") for r in runs),
        key=lambda tr: tr[1]["dev"]["accuracy"],
        default=None,
    )
    if best:
        task, result = best
        names, counts = result["test"]["confusion"]["labels"], result["test"]["confusion"]["counts"]
        confusion = (
            f"\n\nTest confusion matrix of the {task.upper()} ELMo run with the best dev accuracy "
            f"(rows gold, columns predicted):\n\n| gold / predicted | "
            + " | ".join(names)
            + " |\n|---|"
            + "---:|" * len(names)
            + "\n"
            + "\n".join(f"| {n} | " + " | ".join(map(str, row)) + " |" for n, row in zip(names, counts))
        )
    return (
        f"## SST sentiment (`benchmarks/sst.py`)\n\n"
        f"Command: {'; '.join(commands(out_root) for out_root in out_roots)}; git {git_revision()}.\n"
        f"Machine: {machine(run_threads(*out_roots))}.{f' Wall time of this invocation: {wall / 60:.1f} min.' if wall else ''}\n"
        f"Train on train.txt (its root sentences, or with `data.phrases=true` every labelled phrase of its trees: "
        f"column 'train on'), model selection on dev, reported on test (root sentences; mean ± std over seeds). "
        f"ELMo features are computed once per task and reused by every seed (the feature column shows that one "
        f"computation).\n\n"
        + "\n".join(lines)
        + ("\n\n" + "\n".join(gains) if gains else "")
        + confusion
        + f"\n\n{PUBLISHED}\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="sst5", help="comma-separated: sst5, sst2 (configs/<task>.yaml)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--variants", default="elmo,baseline")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-sst")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every run")
    parser.add_argument("--limit", type=int, help="first N sentences of every split (smoke runs)")
    parser.add_argument("--report-only", action="store_true", help="only aggregate the finished runs under --out")
    parser.add_argument("--doc", type=Path, default=DOCS / "benchmarks.md", help="markdown file to update")
    parser.add_argument(
        "--section", default="sst", help="the section of --doc to (re)write (<!-- NAME:start --> ... <!-- NAME:end -->)"
    )
    parser.add_argument(
        "--also", type=Path, action="append", default=[], metavar="DIR", help="more run folders to report beside --out"
    )
    args = parser.parse_args()
    extra = args.set + ([f"data.limit={args.limit}"] if args.limit else [])
    started = time.perf_counter()
    if not args.report_only:
        record_command(args.out)
        for task in args.tasks.split(","):
            for variant in args.variants.split(","):
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    result = run_one(task, REPO / "configs" / f"{task}.yaml", variant, seed, args.out, extra)
                    print(
                        f"{task} {variant} seed {seed}: dev acc {result['dev']['accuracy']:.2f}, "
                        f"test acc {result['test']['accuracy']:.2f}",
                        flush=True,
                    )
    text = report([args.out, *args.also], None if args.report_only else time.perf_counter() - started)
    print(text)
    write_section(args.doc, args.section, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
