"""Side-by-side numerics of ``elmo_core.Elmo`` and AllenNLP 2.10.1's ``allennlp.modules.elmo.Elmo``.

For each model (the TF biLM fixture in ../shared/data/elmo-fixtures, random weights with the
official "small" shapes from ../shared/anchors/allennlp/make_random_weights.py, and the shipped
``default`` biLM, which our own pretraining wrote) and each
configuration (learned mixes set to different weights, ``keep_sentence_boundaries``,
``scalar_mix_parameters``, ``do_layer_norm`` with and without boundaries, ``vocab_to_cache`` with
word ids), a fresh module of each implementation (``num_output_representations=2``, ``dropout=0``)
runs the same batches in order (3, then 2, then 4 sentences, so carried state meets shrinking and
growing batches), in two procedures:

* ``stateful``: AllenNLP as it is (state carried across batches) vs our ``stateful=True``;
* ``reset``: AllenNLP with its LSTM state reset before every batch vs our default (stateless).

It reports the max abs difference over every representation of every batch, and whether the masks
are identical. AllenNLP runs in its own venv (../shared/anchors/allennlp/README.md); this file is
also the script that venv runs (``--allennlp-side``), so it imports nothing of ours at module level.

``--examples`` also runs examples/allennlp_*.py inside AllenNLP's venv with only their import line
changed, and prints both outputs.

    python benchmarks/allennlp_compat_check.py [--examples] [--json OUT.json] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
ANCHOR = SHARED / "anchors" / "allennlp"
FIXTURES = SHARED / "data" / "elmo-fixtures"
TOLERANCE = 1e-5
EXAMPLES = HERE.parent / "examples"
# Scripts written for AllenNLP: run under AllenNLP with only the import line changed.
ALLENNLP_EXAMPLES = ("allennlp_bark_similarity.py", "allennlp_sentiment_classifier.py", "allennlp_crf_tagger.py")
OUR_IMPORT = "from elmo_core import Elmo, batch_to_ids"
ALLENNLP_IMPORT = "from allennlp.modules.elmo import Elmo, batch_to_ids"

BATCHES = [
    [
        "The dog let out a sharp bark",
        "The bark of the ancient oak was rough",
        "Don 't !",
    ],
    ["What a World Cup .", "Brent North Sea crude for November delivery rose 84 cents to 68.88 dollars a barrel ."],
    [
        "It said that two officers involved in the case had been disciplined .",
        "Why ?",
        "The majority will be of the standard 6X6 configuration for carrying personnel .",
        "Even so , Democrats slammed Bush as out of touch .",
    ],
]

# name -> Elmo keyword arguments; "mix_weights" sets scalar_mix_0's pre-softmax weights and gamma
# after construction (so the two representations differ); "words" runs word ids via vocab_to_cache.
CASES = {
    "learned-mixes": {"mix_weights": [[0.3, -0.2, 0.5], 1.7]},
    "keep_sentence_boundaries": {"keep_sentence_boundaries": True, "mix_weights": [[1.0, 0.0, -1.0], 0.5]},
    "scalar_mix_parameters": {"scalar_mix_parameters": [1.0, -0.5, 2.0]},
    "do_layer_norm": {"do_layer_norm": True, "mix_weights": [[0.3, -0.2, 0.5], 1.7]},
    "do_layer_norm+keep_sentence_boundaries": {"do_layer_norm": True, "keep_sentence_boundaries": True},
    "vocab_to_cache (word ids)": {"words": True},
}
PROCEDURES = ("stateful", "reset")


def sentences() -> list[list[list[str]]]:
    return [[s.split() for s in batch] for batch in BATCHES]


def vocabulary() -> list[str]:
    """AllenNLP-style: index 0 is the padding token, every word of the batches after it."""
    words = sorted({w for batch in sentences() for s in batch for w in s})
    return ["@@PADDING@@", *words]


def word_ids(batch: list[list[str]], vocab: list[str]):
    import torch

    index = {w: i for i, w in enumerate(vocab)}
    ids = torch.zeros(len(batch), max(len(s) for s in batch), dtype=torch.long)
    for row, sentence in enumerate(batch):
        ids[row, : len(sentence)] = torch.tensor([index[w] for w in sentence])
    return ids


def run(elmo_class, batch_to_ids, options, weights, case: dict, procedure: str, ours: bool) -> list:
    """Outputs of one fresh module over the batches: per batch (representations, mask) as numpy."""
    import torch

    kwargs = {k: v for k, v in case.items() if k not in ("mix_weights", "words")}
    vocab = vocabulary() if case.get("words") else None
    if ours:
        kwargs["stateful"] = procedure == "stateful"
    elmo = elmo_class(options, weights, 2, dropout=0.0, vocab_to_cache=vocab, **kwargs)
    if "mix_weights" in case:
        values, gamma = case["mix_weights"]
        with torch.no_grad():
            if ours:
                elmo.scalar_mix_0.weights.copy_(torch.tensor(values))
            else:
                for param, value in zip(elmo.scalar_mix_0.scalar_parameters, values):
                    param.fill_(value)
            elmo.scalar_mix_0.gamma.fill_(gamma)
    outputs = []
    with torch.no_grad():
        for batch in sentences():
            if procedure == "reset" and not ours:
                elmo._elmo_lstm._elmo_lstm.reset_states()
            words = word_ids(batch, vocab) if vocab else None
            out = elmo(batch_to_ids(batch), words)
            outputs.append(([r.numpy().copy() for r in out["elmo_representations"]], out["mask"].numpy().copy()))
    return outputs


def models(work: Path) -> dict[str, tuple[str, str]]:
    small = work / "small"
    options = small / "random_elmo_2x1024_128_2048cnn_1xhighway_options.json"
    weights = small / "random_elmo_2x1024_128_2048cnn_1xhighway_weights.hdf5"
    if not weights.is_file():
        subprocess.run(
            [sys.executable, str(ANCHOR / "make_random_weights.py"), "--arch", "small", "--out-dir", str(small)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    from elmo_core.models import labelled_name

    shipped = HERE.parent / "elmo_core" / "pretrained" / "default"
    return {
        "fixture (TF biLM test model)": (str(FIXTURES / "options.json"), str(FIXTURES / "lm_weights.hdf5")),
        'random "small" shapes': (str(options), str(weights)),
        # the files this package ships, trained by our own pretraining: AllenNLP loads them as they are
        f"shipped `{labelled_name('default')}`": (str(shipped / "options.json"), str(shipped / "weights.hdf5")),
    }


def run_example(path: Path, swap_import: bool) -> str:
    """Runs an example script in this process and returns what it printed; with ``swap_import``
    its ``from elmo_core import ...`` line becomes AllenNLP's (the only change)."""
    import contextlib
    import io

    source = path.read_text(encoding="utf-8")
    if swap_import:
        if source.count(OUR_IMPORT) != 1:
            raise SystemExit(f"{path}: expected exactly one line {OUR_IMPORT!r}")
        source = source.replace(OUR_IMPORT, ALLENNLP_IMPORT)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(source, str(path), "exec"), {"__name__": "__main__", "__file__": str(path)})
    return printed.getvalue()


def allennlp_side(spec_path: str, out_path: str) -> None:
    """Runs in the AllenNLP venv: every (model, case, procedure) into one .npz, and the examples'
    printed output (import line swapped) into ``OUT.examples.json``."""
    import numpy as np
    import torch
    from allennlp.modules.elmo import Elmo, batch_to_ids

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    spec = json.loads(Path(spec_path).read_text())
    printed = {name: run_example(EXAMPLES / name, swap_import=True) for name in spec.get("examples", [])}
    Path(out_path + ".examples.json").write_text(json.dumps(printed))
    arrays = {}
    for model, (options, weights) in spec["models"].items():
        for case_name, case in CASES.items():
            for procedure in PROCEDURES:
                for b, (reps, mask) in enumerate(run(Elmo, batch_to_ids, options, weights, case, procedure, False)):
                    key = f"{model}|{case_name}|{procedure}|{b}"
                    arrays[key + "|mask"] = mask
                    for r, rep in enumerate(reps):
                        arrays[f"{key}|{r}"] = rep
    np.savez(out_path, **arrays)


def default_aln_python() -> Path:
    return ANCHOR / "aln-python"


def anchor_available() -> str | None:
    """None when the AllenNLP venv is ready, else the reason it is not."""
    venv = Path(os.environ.get("ALN_VENV", Path.home() / ".cache" / "elmo-anchor" / "aln-venv"))
    if not (ANCHOR / "aln-python").is_file():
        return f"{ANCHOR} is absent"
    if not (venv / "bin" / "python").is_file():
        return f"the AllenNLP venv {venv} is not set up (see {ANCHOR / 'README.md'})"
    if not (FIXTURES / "lm_weights.hdf5").is_file():
        return f"{FIXTURES} is absent"
    return None


def compare(work: Path, aln_python: Path | None = None, examples: bool = False) -> dict:
    """Runs both sides; returns ``{"rows": [{model, case, procedure, max_abs_diff, max_abs_value,
    masks_equal}], "max_abs_diff", "stateless_vs_stateful": {model: diff}, "examples": {script:
    {"ours": printed, "allennlp": printed}}}`` (examples only when asked)."""
    import numpy as np
    import torch

    from elmo_core import Elmo, batch_to_ids

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    work.mkdir(parents=True, exist_ok=True)
    spec = {"models": models(work), "examples": list(ALLENNLP_EXAMPLES) if examples else []}
    (work / "spec.json").write_text(json.dumps(spec))
    subprocess.run(
        [
            str(aln_python or default_aln_python()),
            str(Path(__file__).resolve()),
            "--allennlp-side",
            str(work / "spec.json"),
            str(work / "allennlp.npz"),
        ],
        check=True,
    )
    reference = np.load(work / "allennlp.npz")
    theirs = json.loads((work / "allennlp.npz.examples.json").read_text())
    printed = {name: {"ours": run_example(EXAMPLES / name, False), "allennlp": theirs[name]} for name in theirs}
    rows, control = [], {}
    for model, (options, weights) in spec["models"].items():
        for case_name, case in CASES.items():
            for procedure in PROCEDURES:
                worst, scale, masks_equal = 0.0, 0.0, True
                for b, (reps, mask) in enumerate(run(Elmo, batch_to_ids, options, weights, case, procedure, True)):
                    key = f"{model}|{case_name}|{procedure}|{b}"
                    expected_mask = reference[key + "|mask"]
                    masks_equal &= mask.shape == expected_mask.shape and bool((mask == expected_mask).all())
                    for r, rep in enumerate(reps):
                        expected = reference[f"{key}|{r}"]
                        scale = max(scale, float(np.abs(expected).max()))
                        if rep.shape != expected.shape:
                            worst = float("inf")
                        else:
                            worst = max(worst, float(np.abs(rep - expected).max()))
                rows.append(
                    {
                        "model": model,
                        "case": case_name,
                        "procedure": procedure,
                        "max_abs_diff": worst,
                        "max_abs_value": scale,
                        "masks_equal": masks_equal,
                    }
                )
        # Control: our stateless default against AllenNLP's carried state must differ after the first
        # batch, or the stateful rows above would not be testing the carried state at all.
        ours = run(Elmo, batch_to_ids, options, weights, CASES["learned-mixes"], "reset", True)
        control[model] = max(
            float(np.abs(ours[b][0][0] - reference[f"{model}|learned-mixes|stateful|{b}|0"]).max())
            for b in range(1, len(BATCHES))
        )
    return {
        "rows": rows,
        "max_abs_diff": max(r["max_abs_diff"] for r in rows),
        "stateless_vs_stateful": control,
        "examples": printed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--allennlp-side", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help="folder for the random weights and AllenNLP's outputs")
    parser.add_argument("--aln-python", type=Path, default=None, help="the AllenNLP venv's python wrapper")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--examples", action="store_true", help="also run examples/allennlp_*.py under AllenNLP (import line swapped)"
    )
    args = parser.parse_args()
    if args.allennlp_side:
        allennlp_side(*args.allennlp_side)
        return 0
    reason = anchor_available()
    if reason and args.aln_python is None:
        print(f"cannot compare: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        result = compare(args.work or Path(tmp), args.aln_python, args.examples)
    print("| model | configuration | procedure | max abs diff | max abs value | masks equal |")
    print("|---|---|---|---|---|---|")
    for row in result["rows"]:
        print(
            f"| {row['model']} | {row['case']} | {row['procedure']} | {row['max_abs_diff']:.2e} | "
            f"{row['max_abs_value']:.2f} | {'yes' if row['masks_equal'] else 'NO'} |"
        )
    for model, diff in result["stateless_vs_stateful"].items():
        print(f"control, {model}: our stateless default vs AllenNLP's carried state, batches 2-3: {diff:.2e}")
    for name, outputs in result["examples"].items():
        same = "identical output" if outputs["ours"] == outputs["allennlp"] else "ran; output differs"
        print(f"\n== examples/{name} under AllenNLP, import line swapped: {same}")
        for side in ("ours", "allennlp"):
            print(f"-- {side}:\n{outputs[side].rstrip()}")
    ok = (
        result["max_abs_diff"] <= TOLERANCE
        and all(r["masks_equal"] for r in result["rows"])
        and min(result["stateless_vs_stateful"].values()) > 100 * TOLERANCE
    )
    print(f"overall max abs diff {result['max_abs_diff']:.2e} (tolerance {TOLERANCE:g}): {'PASS' if ok else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
