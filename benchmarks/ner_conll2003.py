"""CoNLL-2003 NER benchmark: does the tagger reproduce the published protocol, and what does ELMo add?

Variants of one config (the main job's by default):
  baseline   no pretrained vectors, no ELMo (word embeddings learned on CoNLL, char CNN)
  glove      + GloVe 6B 50-d word vectors (the published baseline's inputs)
  elmo       + GloVe + ELMo (the main job)
  elmo_learned  ELMo with learned word vectors (the main job before GloVe; comparable to older figures)

Train on eng.train, select the epoch on eng.testa (dev), report eng.testb (test), over N seeds.
Each run is an ordinary `elmo-tasks train` run directory, so an interrupted benchmark resumes and
finished runs are not repeated; `--jobs 2` trains two runs side by side (one thread each). Results
(and a plot of test F1 per variant) go to docs/.

    python benchmarks/ner_conll2003.py --seeds 5 --jobs 2            # baseline, glove, elmo
    python benchmarks/ner_conll2003.py --variants glove,elmo --config configs/ner_conll2003_paper.yaml --seeds 3
    python benchmarks/ner_conll2003.py --report-only                  # aggregate what has finished
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from common import DOCS, REPO, commands, git_revision, machine, mean_std, record_command, run_threads, write_section

PUBLISHED = "Published (test F1): ELMo paper 92.22 ± 0.10 with baseline 90.15 (Peters et al. 2018, original 5.5B-token ELMo + GloVe); TagLM 91.93 (Peters et al. 2017)."
LEARNED_WORDS = ["model.words.pretrained=null", "model.words.fold_digits=true", "model.words.min_count=2"]
GLOVE = ["model.words.pretrained=glove.6B.50d", "model.words.fold_digits=false"]
VARIANTS = {
    "baseline": ["model.elmo.enabled=false", *LEARNED_WORDS],
    "glove": ["model.elmo.enabled=false", *GLOVE],
    "elmo": ["model.elmo.enabled=true", *GLOVE],
    "elmo_learned": ["model.elmo.enabled=true", *LEARNED_WORDS],
}
LABELS = {
    "baseline": "BiLSTM-CRF, learned word vectors (no GloVe, no ELMo)",
    "glove": "BiLSTM-CRF + GloVe",
    "elmo": "BiLSTM-CRF + GloVe + ELMo",
    "elmo_learned": "BiLSTM-CRF + ELMo, learned word vectors",
}


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
    return Trainer(task_config, out, progress=False, log=lambda *_: None).run()


def run_in_worker(config: Path, variant: str, seed: int, out_root: Path, extra: list[str]) -> tuple[str, int, dict]:
    import torch

    torch.set_num_threads(1)  # two OpenMP pools beside each other on 2 cores spin-wait
    return variant, seed, run_one(config, variant, seed, out_root, [*extra, "train.threads=1"])


LOW_PRECISIONS = ("bf16", "int8")


def live_test_scores(run_dir: Path, precision: str) -> dict:
    """Test F1 of a trained ELMo run with its backbone recomputed live at ``precision`` (same head,
    trained on fp32 features); cached in ``RUN/test_live_{precision}.json`` with the git revision."""
    cached = run_dir / f"test_live_{precision}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    from tasks.run_dir import load_run

    trained = load_run(run_dir, precision=precision)
    test_path = trained.task.data_path("test")
    started = time.perf_counter()  # the backbone runs live inside predict_file
    split, predictions, _ = trained.predict_file(test_path, "labelled")
    scores = trained.task.score(split, predictions)
    result = {
        "f1": scores["f1"],
        "precision_run": trained.bilm.precision,
        "seconds": round(time.perf_counter() - started, 1),
        "git": git_revision(),
    }
    cached.write_text(json.dumps(result) + "\n")
    return result


def collect(out_root: Path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for path in sorted(out_root.glob("*-seed*/results.json")):
        variant = path.parent.name.rsplit("-seed", 1)[0]
        found.setdefault(variant, []).append(json.loads(path.read_text()))
    return found


def report(out_root: Path, config: Path, extra: list[str], wall: float | None, plot_path: Path) -> str:
    found = collect(out_root)
    lines = [
        "| tagger | backbone | seeds | dev F1 | test F1 | test strict F1 | s / epoch | epochs | train time / run |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = [v for v in VARIANTS if v in found] + sorted(v for v in found if v not in VARIANTS)
    for variant in order:
        runs = found[variant]
        backbone = runs[0].get("backbone") or "none (word emb. + char CNN only)"
        lines.append(
            f"| {LABELS.get(variant, variant)} | {backbone} | {len(runs)} | "
            f"{mean_std([r['dev']['f1'] for r in runs])} | {mean_std([r['test']['f1'] for r in runs])} | "
            f"{mean_std([r['test']['strict_f1'] for r in runs])} | {mean_std([r['seconds_per_epoch'] for r in runs])} | "
            f"{mean_std([r['epochs_run'] for r in runs])} | {mean_std([r['train_seconds_total'] / 60 for r in runs])} min |"
        )
    for with_, without, what in (("elmo", "glove", "ELMo"), ("glove", "baseline", "GloVe")):
        if with_ in found and without in found:
            a = [r["test"]["f1"] for r in found[with_]]
            b = [r["test"]["f1"] for r in found[without]]
            spread = f" (std {statistics.stdev(a):.2f} vs {statistics.stdev(b):.2f})" if min(len(a), len(b)) > 1 else ""
            lines.append(f"\n**{what} gain on test: {statistics.mean(a) - statistics.mean(b):+.2f} F1**{spread}.")
    plot(found, order, plot_path)
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
    precision_lines = ""
    fp32_files = sorted(out_root.glob("elmo-seed*/test_live_fp32.json"))
    for precision in LOW_PRECISIONS:
        pairs = [
            (json.loads((f.parent / f"test_live_{precision}.json").read_text()), json.loads(f.read_text()))
            for f in fp32_files
            if (f.parent / f"test_live_{precision}.json").is_file()
        ]
        pairs = [(low, exact) for low, exact in pairs if low["precision_run"] == precision]
        if pairs:
            precision_lines += (
                f"\n\n{precision} backbone (`--precision {precision}`; heads trained on fp32 features, test features "
                f"recomputed live): test F1 {mean_std([low['f1'] for low, _ in pairs])} vs fp32 live "
                f"{mean_std([exact['f1'] for _, exact in pairs])}, cost "
                f"{statistics.mean(exact['f1'] - low['f1'] for low, exact in pairs):+.2f} F1 "
                f"(mean over {len(pairs)} seeds; per seed "
                + ", ".join(f"{exact['f1'] - low['f1']:+.2f}" for low, exact in pairs)
                + ")."
            )
    features = ""
    elmo_runs = found.get("elmo", [])
    if elmo_runs and "features_seconds" in elmo_runs[0]:
        features = f"\n\nELMo feature extraction (once per run, all splits): {mean_std([sum(r['features_seconds'].values()) for r in elmo_runs])} s."
    return (
        f"## CoNLL-2003 NER{'' if config.name == 'ner_conll2003.yaml' else f', `{config.name}`'} "
        f"(`benchmarks/ner_conll2003.py`)\n\n"
        f"Command: {commands(out_root)} (config `{config.relative_to(REPO) if config.is_relative_to(REPO) else config}`"
        f"{', overrides ' + ' '.join(extra) if extra else ''}); git {git_revision()}.\n"
        f"Machine: {machine(run_threads(out_root))}.{f' Wall time of this invocation: {wall / 60:.1f} min.' if wall else ''}\n"
        f"Train eng.train, model selection on eng.testa (dev), reported on eng.testb (test); conlleval span F1 "
        f"(mean ± std over seeds).\n\n"
        + "\n".join(lines)
        + per_type
        + features
        + precision_lines
        + f"\n\n{PUBLISHED}\n"
    )


def plot(found: dict[str, list[dict]], order: list[str], path: Path) -> None:
    """``path`` (a PNG): test F1 per variant, mean and std over seeds, seeds as dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(order), 3.4))
    for x, variant in enumerate(order):
        scores = [r["test"]["f1"] for r in found[variant]]
        std = statistics.stdev(scores) if len(scores) > 1 else 0.0
        ax.bar(x, statistics.mean(scores), yerr=std, capsize=4, color="tab:blue", alpha=0.6)
        ax.scatter([x] * len(scores), scores, color="black", s=8, zorder=3)
    ax.axhline(90.15, color="tab:red", linestyle="--", linewidth=1, label="paper baseline 90.15")
    ax.axhline(92.22, color="tab:green", linestyle="--", linewidth=1, label="paper + ELMo 92.22")
    ax.set_xticks(
        range(len(order)),
        [LABELS.get(v, v).replace("BiLSTM-CRF", "").strip(" ,+") or v for v in order],
        fontsize=7,
        rotation=15,
    )
    low = min(r["test"]["f1"] for runs in found.values() for r in runs)
    ax.set_ylim(low - 2, 93.5)
    ax.set_ylabel("test F1 (CoNLL-2003 eng.testb)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "ner_conll2003.yaml")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--variants", default="baseline,glove,elmo", help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained side by side (one thread each)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-ner")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every run")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--precisions",
        action="store_true",
        help="also score every ELMo run's test set with its backbone run live at fp32, bf16 and int8",
    )
    parser.add_argument("--doc", type=Path, default=DOCS / "benchmarks.md", help="markdown file to update")
    parser.add_argument(
        "--section", default="ner-conll2003", help="the section of --doc to (re)write (<!-- NAME:start --> ... :end)"
    )
    parser.add_argument(
        "--plot",
        type=Path,
        help="where the plot of test F1 per variant goes (default: docs/ner_test_f1_by_variant.png with the default "
        "--doc, else beside --doc)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    if not args.report_only:
        record_command(args.out)
        # variant by variant, in the order given: a benchmark cut short has whole variants first
        runs = [(v, s) for v in args.variants.split(",") for s in range(args.first_seed, args.first_seed + args.seeds)]
        if args.jobs > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(run_in_worker, args.config, v, s, args.out, args.set) for v, s in runs]
                for future in futures:
                    variant, seed, result = future.result()
                    print(
                        f"{variant} seed {seed}: dev F1 {result['dev']['f1']:.2f}, test F1 {result['test']['f1']:.2f}"
                    )
        else:
            for variant, seed in runs:
                result = run_one(args.config, variant, seed, args.out, args.set)
                print(f"{variant} seed {seed}: dev F1 {result['dev']['f1']:.2f}, test F1 {result['test']['f1']:.2f}")
    if args.precisions:
        for run_dir in sorted(args.out.glob("elmo-seed*")):
            if (run_dir / "results.json").is_file():
                for precision in ("fp32", *LOW_PRECISIONS):
                    scores = live_test_scores(run_dir, precision)
                    print(f"{precision} {run_dir.name}: test F1 {scores['f1']:.2f} ({scores['seconds']} s)", flush=True)
    plot_path = args.plot or args.doc.parent / "ner_test_f1_by_variant.png"
    wall = None if args.report_only else time.perf_counter() - started
    text = report(args.out, args.config, args.set, wall, plot_path)
    print(text)
    write_section(args.doc, args.section, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
