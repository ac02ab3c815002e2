"""Counted warnings (data/warnings.py): input that is read but suspicious is reported as one summary
line per kind and file, never accepted silently, and ``--strict`` turns it into an error naming the
first occurrence (FILE:LINE). Also: real files from elsewhere (GLUE's SST-2 TSVs, CoNLL++-style IOB2
test files scored by a run trained on IOB1).

Every case writes its tiny files in ``tmp_path``; the NER run they evaluate is trained once per module.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from data.conll import read_conll
from data.errors import DataFormatError
from data.tags import convert
from data.tsv import read_tsv
from data.warnings import DataWarning, Finding, StrictDataError, collecting, report
from helpers import REPO, SENTENCES, quiet, shared_path, write_conll, write_random_model
from tasks.cli import main
from tasks.registry import load_task_config
from tasks.trainer import Trainer

NER = REPO / "configs" / "ner_conll2003.yaml"
SST2 = REPO / "configs" / "sst2.yaml"
WSD = REPO / "configs" / "wsd.yaml"
BILM_TINY = REPO / "configs" / "bilm_tiny.yaml"

torch.set_num_threads(1)


@dataclass
class NerEnv:
    root: Path
    options: Path
    weights: Path
    run: Path  # trained on IOB1 (data.scheme: IOB1, as configs/ner_conll2003.yaml declares)

    def sets(self, data_dir: Path, **extra) -> list[str]:
        values = {
            "data.dir": str(data_dir),
            "data.train": "train.txt",
            "data.dev": "dev.txt",
            "data.test": None,
            "backbone.name": None,
            "backbone.options": str(self.options),
            "backbone.weights": str(self.weights),
            "backbone.store": None,
            "train.epochs": 1,
            "train.threads": 1,
            "model.hidden": 8,
            "model.words.min_count": 1,
            "model.words.pretrained": None,
            **extra,
        }
        return [arg for key, value in values.items() for arg in ("--set", f"{key}={json.dumps(value)}")]


@pytest.fixture(scope="module")
def ner(tmp_path_factory) -> NerEnv:
    root = tmp_path_factory.mktemp("warnings")
    options, weights = write_random_model(root / "model")
    write_conll(root / "train.txt", SENTENCES * 2)
    write_conll(root / "dev.txt", SENTENCES[:3])
    env = NerEnv(root, options, weights, root / "ner-run")
    args = env.sets(root)
    overrides = {a.split("=", 1)[0]: json.loads(a.split("=", 1)[1]) for a in args[1::2]}
    Trainer(load_task_config(NER, overrides), env.run, progress=False, log=quiet).run()
    return env


def cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def assert_one_error_line(err: str, verb: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"elmo-tasks {verb}: error: "), err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def conll_text(sentences) -> str:
    """CoNLL-2003 lines; sentence ``i``'s tokens start on line ``3 + sum(len + 1 of those before)``."""
    lines = ["-DOCSTART- -X- O O", ""]
    for sentence in sentences:
        lines += [f"{w} NN I-NP {t}" for w, t in sentence] + [""]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the mechanism
def test_a_finding_is_one_summary_line_and_a_strict_error_names_its_first_occurrence():
    finding = Finding("odd", "f.txt", "odd thing")
    for i in range(5):
        finding.add(10 + i, f"detail {i}")
    assert finding.line() == (
        "warning: 5 odd things in f.txt (first at line 10: detail 0; also lines 11, 12, ...); see --strict"
    )
    error = finding.error()
    assert isinstance(error, DataFormatError) and (error.path, error.line) == ("f.txt", 10)
    assert (
        str(error)
        == "f.txt:10: odd thing: detail 0 (5 in this file; an error under --strict, a counted warning otherwise)"
    )
    share = Finding("long", "c.txt", "sentence skipped", "sentences skipped", total=40)
    for line in range(30):
        share.add(line + 1, "61 tokens")
    assert share.summary().startswith("30 of 40 sentences skipped (75.0%) in c.txt (first at line 1: 61 tokens")


def test_blocks_nest_print_each_finding_once_and_pass_strictness_inward():
    printed: list[str] = []
    finding = Finding("odd", "f.txt", "odd thing")
    finding.add(3, "x")
    with collecting(log=printed.append) as outer:
        with collecting() as inner:
            report(finding)
            report(Finding("empty", "f.txt", "nothing"))  # no occurrence: not reported
    assert printed == [finding.line()] and inner.findings == outer.findings == [finding]
    assert outer.counts() == {"odd": 1}
    with collecting(strict=True), collecting(), pytest.raises(StrictDataError, match=r"^f\.txt:3: odd thing: x"):
        report(finding)


def test_outside_any_block_a_finding_is_a_python_warning():
    finding = Finding("odd", "f.txt", "odd thing")
    finding.add(3, "x")
    with pytest.warns(DataWarning, match=r"1 odd thing in f\.txt \(first at line 3: x\)"):
        report(finding)


def test_no_message_runs_past_a_few_lines():
    error = DataFormatError("f.txt", 1, "label " + "x" * 500_000 + "\n" * 5_000)
    assert len(str(error)) < 10_000 and len(str(error).splitlines()) <= 15


# ---------------------------------------------------------------- (a) illegal tag transitions
def test_illegal_tag_transitions_are_counted_and_refused_under_strict(ner, tmp_path, capsys):
    # IOB1 (I- opens entities), with two B- tags that do not follow an entity of their type.
    stray = [("in", "O"), ("Paris", "B-LOC")]
    data = tmp_path / "test.txt"
    data.write_text(conll_text(SENTENCES + [stray, stray]))
    first = 3 + sum(len(s) + 1 for s in SENTENCES) + 1
    code, out, err = cli(capsys, "evaluate", ner.run, "--data", data)
    assert code == 0, err
    assert (
        f"elmo-tasks evaluate: warning: 2 illegal tag transitions (IOB1) in {data} "
        f"(first at line {first}: B-LOC after O; also line {first + 3})"
    ) in err
    assert read_conll(data).stats.invalid_transitions == 2
    code, _, err = cli(capsys, "evaluate", ner.run, "--data", data, "--strict")
    assert code == 2
    assert_one_error_line(
        err, "evaluate", f"{data}:{first}: illegal tag transition (IOB1): B-LOC after O (2 in this file"
    )


# ---------------------------------------------------------------- (b) entity types unseen in training
def test_entity_types_never_seen_in_training_are_counted_in_dev_and_refused_under_strict(ner, tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    write_conll(folder / "train.txt", SENTENCES * 2)
    dev = folder / "dev.txt"
    dev.write_text(conll_text(SENTENCES[:2] + [[("the", "O"), ("World", "I-EVENT"), ("Cup", "I-EVENT")]]))
    line = 3 + sum(len(s) + 1 for s in SENTENCES[:2]) + 1
    code, out, err = cli(capsys, "train", NER, "--quiet", "--out", tmp_path / "run", *ner.sets(folder))
    assert code == 0, err
    assert (
        f"elmo-tasks train: warning: 1 entity of a type never seen in training in {dev} "
        f"(first at line {line}: EVENT 'World Cup'); types 'EVENT'"
    ) in err
    code, _, err = cli(capsys, "train", NER, "--quiet", "--out", tmp_path / "run2", "--strict", *ner.sets(folder))
    assert code == 2
    assert_one_error_line(err, "train", f"{dev}:{line}: entity of a type never seen in training: EVENT 'World Cup'")
    # data.strict in the config does the same
    code, _, err = cli(
        capsys, "train", NER, "--quiet", "--out", tmp_path / "run3", *ner.sets(folder, **{"data.strict": True})
    )
    assert code == 2 and f"{dev}:{line}:" in err


# ---------------------------------------------------------------- (c) control characters inside tokens
def test_control_characters_in_conll_tokens(ner, tmp_path, capsys):
    data = tmp_path / "test.txt"
    data.write_text(conll_text([[("Black\x1bburn", "I-PER"), ("said", "O")], *SENTENCES[:2]]))
    code, _, err = cli(capsys, "evaluate", ner.run, "--data", data)
    assert code == 0
    assert (
        f"warning: 1 token with a control character in {data} (first at line 3: U+001B (ESC) at column 6: "
        "'Black\\x1bburn')"
    ) in err
    code, _, err = cli(capsys, "evaluate", ner.run, "--data", data, "--strict")
    assert code == 2
    assert_one_error_line(err, "evaluate", f"{data}:3: token with a control character: U+001B (ESC)")


def test_control_characters_in_text_and_tokenised_input(ner, tmp_path, capsys):
    text = tmp_path / "news.txt"
    text.write_text("Peter met Werner .\nthe c\x7fat sat .\n")
    code, _, err = cli(capsys, "predict", ner.run, "--input", text, "--output", tmp_path / "o.txt", "--format", "text")
    assert code == 0
    assert f"warning: 1 control character read as a space in {text} (first at line 2: U+007F (DEL) at column 6" in err
    code, _, err = cli(
        capsys,
        "predict",
        ner.run,
        "--input",
        text,
        "--output",
        tmp_path / "o2.txt",
        "--format",
        "tokenized",
        "--strict",
    )
    assert code == 2
    assert_one_error_line(err, "predict", f"{text}:2: token with a control character: U+007F (DEL)")
    assert not (tmp_path / "o2.txt").exists()
    model = ["--options", ner.options, "--weights", ner.weights, "--quiet"]
    code, _, err = cli(capsys, "embed", *model, "--input", text, "--output", tmp_path / "e.hdf5")
    assert code == 0 and f"warning: 1 token with a control character in {text} (first at line 2" in err
    code, _, err = cli(capsys, "embed", *model, "--input", text, "--output", tmp_path / "e2.hdf5", "--strict")
    assert code == 2 and not (tmp_path / "e2.hdf5").exists()
    assert_one_error_line(err, "embed", f"{text}:2: token with a control character")


def test_control_characters_in_tsv_text(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("sentence\tlabel\na fine film\t1\nthe c\x01at\t0\nbad\t0\n")
    with collecting() as found:
        assert len(read_tsv(path)) == 3
    assert [f.summary() for f in found.findings] == [
        f"1 text with a control character in {path} (first at line 3: U+0001 (control character) at column 6: "
        "'the c\\x01at')"
    ]
    with collecting(strict=True), pytest.raises(DataFormatError, match=rf"^{path}:3: text with a control character"):
        read_tsv(path)


# ---------------------------------------------------------------- (d) pretraining sentences skipped as too long
def test_pretraining_counts_the_sentences_it_skips_as_too_long(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the dog saw a cat .\n" * 10 + ("w " * 12 + "\n") * 30)
    argv = ["pretrain", "--config", BILM_TINY, "--train", corpus, "--heldout", corpus, "--quiet"]
    limits = ["--set", "max_tokens_seen=200", "--set", "max_sentence_tokens=10"]
    code, out, err = cli(capsys, *argv, "--out", tmp_path / "bilm", *limits)
    assert code == 0, err
    assert (
        f"elmo-tasks pretrain: warning: 30 of 40 sentences skipped as longer than max_sentence_tokens=10 (75.0%) "
        f"in {corpus} (first at line 11: 12 tokens; also lines 12, 13, ...)"
    ) in err
    assert "corpus: 40 sentences, 30 (75.0%) skipped as longer than max_sentence_tokens=10" in out
    result = json.loads((tmp_path / "bilm" / "result.json").read_text())
    assert result["corpus"] == {
        "sentences": 40,
        "skipped_too_long": 30,
        "skipped_too_long_percent": 75.0,
        "max_sentence_tokens": 10,
    }
    code, _, err = cli(capsys, *argv, "--out", tmp_path / "bilm2", *limits, "--strict")
    assert code == 2 and not (tmp_path / "bilm2" / "checkpoint.pt").exists()
    assert_one_error_line(
        err, "pretrain", f"{corpus}:11: sentence skipped as longer than max_sentence_tokens=10: 12 tokens (30 of 40"
    )


# ---------------------------------------------------------------- (e) WSD gold keys that are no WordNet 3.0 sense
def test_gold_keys_that_are_no_wordnet_sense_stay_out_of_the_inventory(ner, tmp_path, capsys):
    from helpers import MONEY, PLANT, RIVER, require_wordnet, write_wsd

    require_wordnet()
    write_wsd(tmp_path, "semcor", [MONEY, RIVER])
    write_wsd(tmp_path, "semeval2007", [RIVER, PLANT], prefix="semeval2007.")
    key = tmp_path / "semcor" / "semcor.gold.key.txt"
    key.write_text(key.read_text().replace("cash%1:21:00::", "cash%1:99:99::"))
    sets = {
        "data.dir": str(tmp_path),
        "data.test": None,
        "backbone.name": None,
        "backbone.options": str(ner.options),
        "backbone.weights": str(ner.weights),
        "train.epochs": 1,
        "model.sense_dim": 8,
    }
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    code, _, err = cli(capsys, "train", WSD, "--quiet", "--out", tmp_path / "run", *args)
    assert code == 0, err
    assert (
        f"warning: 1 gold key that is not a WordNet 3.0 sense key in {key} "
        "(first at line 3: 'cash%1:99:99::' of instance d000.s000.t002)"
    ) in err
    senses = json.loads((tmp_path / "run" / "vocab.json").read_text())["senses"]
    assert "cash%1:99:99::" not in senses and "deposit%2:40:00::" in senses
    code, _, err = cli(capsys, "train", WSD, "--quiet", "--out", tmp_path / "run2", "--strict", *args)
    assert code == 2
    assert_one_error_line(err, "train", f"{key}:3: gold key that is not a WordNet 3.0 sense key: 'cash%1:99:99::'")


# ---------------------------------------------------------------- (f) a TSV header found only by a guess
def test_a_first_line_taken_for_a_header_by_a_guess_is_reported(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("a gripping film\tgreat\ndull\tbad\nfun\tgood\nmeh\tbad\nok\tgood\n")
    with collecting() as found:
        examples = read_tsv(path, text_column=0, label_column=1)
    assert [e.line for e in examples] == [2, 3, 4, 5]
    assert [f.line() for f in found.findings] == [
        f"warning: 1 first line taken for a header by a guess in {path} (first at line 1: its label 'great' "
        "occurs nowhere else in column 1); set data.header: false if line 1 is an example (true to say it is a "
        "header); see --strict"
    ]
    with collecting(strict=True), pytest.raises(DataFormatError) as caught:
        read_tsv(path, text_column=0, label_column=1)
    assert str(caught.value).startswith(f"{path}:1: first line taken for a header by a guess: its label 'great'")
    assert "data.header: false" in str(caught.value)
    with collecting() as found:  # said so: no guess, no warning
        assert len(read_tsv(path, header=False)) == 5
    assert not found.findings


# ---------------------------------------------------------------- real files: GLUE's SST-2 TSVs
def glue(tmp_path: Path, header: str, rows: list[tuple[str, str]], name: str = "train.tsv") -> Path:
    path = tmp_path / name
    first_is_label = header.lower().startswith("label")
    path.write_text(
        header
        + "\n"
        + "".join(f"{label}\t{text}\n" if first_is_label else f"{text}\t{label}\n" for text, label in rows)
    )
    return path


GLUE_ROWS = [
    ("it 's a charming and often affecting journey . ", "1"),
    ("unflinchingly bleak and desperate ", "0"),
    ("allows us to hope that nolan is poised to embark a major career ", "1"),
    ("the acting , costumes , music , cinematography and sound are all astounding ", "1"),
    ("it 's slow -- very , very slow . \"", "0"),
]


@pytest.mark.parametrize("header", ["sentence\tlabel", "label\tsentence", "Label\tSentence"])
def test_a_glue_header_is_recognised_by_its_names_whichever_column_comes_first(tmp_path, header):
    path = glue(tmp_path, header, GLUE_ROWS)
    with collecting() as found:
        examples = read_tsv(path)
    assert [(e.label, e.line) for e in examples] == [("1", 2), ("0", 3), ("1", 4), ("1", 5), ("0", 6)]
    assert examples[0].tokens[:3] == ["it", "'s", "a"] and examples[4].tokens[-1] == '"'
    assert not found.findings  # a header by its names is no guess
    text_name, label_name = sorted(header.split("\t"), key=lambda name: name.lower() != "sentence")
    assert read_tsv(path, text_column=text_name, label_column=label_name) == examples


def test_glue_test_tsv_without_labels_says_so(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text("index\tsentence\n0\tuneasy mishmash of styles and genres .\n1\tthis film 's relationship\n")
    with pytest.raises(DataFormatError) as caught:
        read_tsv(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:1: no label column: the header names 'index', 'sentence'")
    assert "GLUE's test.tsv" in message


def test_labels_that_look_like_text_name_the_text_column_in_one_short_line(tmp_path):
    rows = [(f"review number {i} says the film is fine or not", str(i % 2)) for i in range(2000)]
    path = glue(tmp_path, "label\tsentence", rows)
    with pytest.raises(DataFormatError) as caught:  # the columns asked for the wrong way round
        read_tsv(path, text_column=0, label_column=1, max_labels=2)
    message = str(caught.value)
    assert len(message) < 600 and len(message.splitlines()) == 1
    assert message.startswith(f"{path}: 2,000 distinct labels in column 1 ('sentence')")
    assert "but the task has 2 classes" in message
    assert "column 1 ('sentence') looks like the text" in message and "column 0 ('label') like the labels" in message
    assert "set data.text_column and data.label_column" in message


def test_sst2_trains_on_glue_tsv_files_with_the_config_defaults(tmp_path, capsys):
    rows = GLUE_ROWS * 6
    glue(tmp_path, "label\tsentence", rows, "train.tsv")
    glue(tmp_path, "sentence\tlabel", rows[:10], "dev.tsv")
    sets = {
        "data.dir": str(tmp_path),
        "data.format": "tsv",
        "data.train": "train.tsv",
        "data.dev": "dev.tsv",
        "data.test": None,
        "model.elmo.enabled": False,
        "model.words.dim": 8,
        "train.epochs": 1,
    }
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    code, out, err = cli(capsys, "train", SST2, "--quiet", "--out", tmp_path / "run", *args)
    assert code == 0, err
    assert "labels {'0': 12, '1': 18}" in out and "warning" not in err
    # by name, too (the columns named in the config; the header may put them in any order)
    named = [*args, "--set", "data.text_column=sentence", "--set", "data.label_column=label"]
    code, _, err = cli(capsys, "train", SST2, "--quiet", "--out", tmp_path / "run2", *named)
    assert code == 0, err
    # the columns swapped by index: a short message that says which column holds the text
    swapped = [*args, "--set", "data.text_column=0", "--set", "data.label_column=1"]
    code, _, err = cli(capsys, "train", SST2, "--quiet", "--out", tmp_path / "run3", *swapped)
    assert code == 2
    assert_one_error_line(err, "train", "distinct labels in column 1 ('sentence')", "looks like the text")
    assert len(err) < 1000


# ---------------------------------------------------------------- real files: an IOB2 test file, an IOB1 run
def write_iob2(source: Path, target: Path) -> Path:
    """``source`` (IOB1 CoNLL-2003 columns) with its NER tags in IOB2 (CoNLL++'s scheme)."""
    dataset = read_conll(source, scheme="IOB1")
    lines = ["-DOCSTART- -X- O O", ""]
    for sentence in dataset.sentences:
        tags = convert(sentence.columns["ner"], "IOB1", "IOB2")
        lines += [
            f"{t} {p} {c} {n}"
            for t, p, c, n in zip(sentence.tokens, sentence.columns["pos"], sentence.columns["chunk"], tags)
        ]
        lines.append("")
    target.write_text("\n".join(lines) + "\n")
    return target


def check_iob2_scores(run: Path, iob1: Path, iob2: Path, tmp_path: Path) -> None:
    from tasks.cli.evaluate import evaluate

    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # the IOB2 file is read as IOB2: nothing illegal in it
        scores1 = evaluate(run, iob1, tmp_path / "p1.txt")
        scores2 = evaluate(run, iob2, tmp_path / "p2.txt")
    assert scores2["f1"] == pytest.approx(scores1["f1"]) and scores2["strict_f1"] == pytest.approx(scores1["strict_f1"])
    gold1, pred1 = read_predictions(tmp_path / "p1.txt")
    gold2, pred2 = read_predictions(tmp_path / "p2.txt")
    # gold and predictions are both in the file's scheme: the IOB1 predictions converted to IOB2
    assert gold2 == [convert(g, "IOB1", "IOB2") for g in gold1]
    assert pred2 == [convert(p, "IOB1", "IOB2") for p in pred1]
    correct = sum(g == p for gs, ps in zip(gold2, pred2) for g, p in zip(gs, ps))
    assert scores2["accuracy"] == pytest.approx(100 * correct / sum(map(len, gold2)))


def read_predictions(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    gold, pred, g, p = [], [], [], []
    for line in path.read_text().splitlines() + [""]:
        if not line.strip():
            if g:
                gold.append(g)
                pred.append(p)
            g, p = [], []
            continue
        _, gold_tag, pred_tag = line.split()
        g.append(gold_tag)
        p.append(pred_tag)
    return gold, pred


def test_an_iob2_file_is_scored_in_its_own_scheme_by_a_run_trained_on_iob1(ner, tmp_path):
    data = tmp_path / "dev.txt"
    adjacent = [("Peter", "I-PER"), ("Werner", "B-PER"), ("Zwingmann", "I-PER"), ("said", "O")]
    write_conll(data, SENTENCES + [adjacent])
    check_iob2_scores(ner.run, data, write_iob2(data, tmp_path / "dev.iob2.txt"), tmp_path)


def test_conll2003_test_in_iob2_is_scored_in_iob2(ner, tmp_path):
    """The real test set's first 150 sentences (read from ../shared/data, converted in tmp_path)."""
    testb = shared_path("conll2003", "eng.testb")
    blocks = testb.read_text().split("\n\n")
    head = tmp_path / "testb.head.txt"
    head.write_text("\n\n".join(blocks[:150]) + "\n")
    check_iob2_scores(ner.run, head, write_iob2(head, tmp_path / "testb.iob2.txt"), tmp_path)
