"""Which library should split raw text into sentences and CoNLL-2003-style tokens?

Candidates: segtok (``split_single`` + ``word_tokenizer`` + ``split_contractions``, what flair's
SegtokSentenceSplitter does), syntok (``segmenter.analyze``), spaCy's rule-based English
tokenizer (``spacy.blank("en")`` + the ``sentencizer``), and NLTK (already a dependency: its
Treebank word tokenizer under an untrained Punkt splitter; Punkt's trained models are a download).

Text: CoNLL-2003 dev (eng.testa) and test (eng.testb) turned back into running text, every
document a paragraph (documents separated by a blank line, the sentences of one document by a
space). Two variants of each sentence: ``spaces`` (the tokens joined by single spaces: what
pre-tokenised input looks like) and ``detok`` (simple detokenisation rules: no space before
``, . ; : ! ? % ) ]`` and clitics such as ``'s n't``, none after ``( [ $``, straight quotes attached
inwards). The gold token and sentence spans are known exactly because the text is built from them.

Reported: token precision / recall / F1 over exact character spans, sentence-boundary precision /
recall / F1 (a boundary is the end of a sentence that is not the end of its document; CoNLL's
headlines and datelines end without punctuation, so no splitter can find all of them), and speed
in gold tokens per second on the ~97k tokens of dev + test (detok variant, best of 3, one thread,
sentences + tokens + character offsets).

Run: ``python benchmarks/tokenizer_choice.py [--also-python /path/to/python/with/spacy]``. Candidates
that do not import in this interpreter are measured with ``--also-python`` (a second environment,
so that spaCy's ~45 packages need not be installed beside the project); the table goes to
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

from common import REPO, command_line, git_revision, machine, write_section

CONLL = Path(os.environ.get("CONLL2003_DIR", REPO.parent / "shared" / "data" / "conll2003"))
CANDIDATES = ("segtok", "syntok", "spacy", "nltk", "data.tokenize")

NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", "%", ")", "]", "}", "'s", "'S", "n't", "'re", "'ve", "'ll", "'d", "'m"}
NO_SPACE_AFTER = {"(", "[", "{", "$"}

Spans = list[tuple[int, int]]


# -- gold text ------------------------------------------------------------------------------------
def read_documents(path: Path) -> list[list[list[str]]]:
    """Documents -> sentences -> tokens, by ``-DOCSTART-`` lines and blank lines."""
    documents: list[list[list[str]]] = []
    sentence: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if fields and fields[0] == "-DOCSTART-":
            documents.append([])
        elif fields:
            sentence.append(fields[0])
        elif sentence:
            if not documents:
                documents.append([])
            documents[-1].append(sentence)
            sentence = []
    if sentence:
        documents[-1].append(sentence)
    return [d for d in documents if d]


def build_text(documents: list[list[list[str]]], variant: str) -> tuple[str, Spans, list[int], list[int]]:
    """The running text, the gold token spans, the gold sentence boundaries (inside documents) and
    the document ends."""
    parts: list[str] = []
    length = 0
    tokens: Spans = []
    boundaries: list[int] = []
    doc_ends: list[int] = []

    def put(piece: str) -> None:
        nonlocal length
        parts.append(piece)
        length += len(piece)

    for d, document in enumerate(documents):
        if d:
            put("\n\n")
        quote_open = (
            False  # straight quotes alternate: an opening one glues to the next token, a closing one to the last
        )
        for s, sentence in enumerate(document):
            if s:
                put(" ")
            opened = False  # the previous token was an opening quote
            for t, token in enumerate(sentence):
                closing = token == '"' and quote_open
                if t:
                    glue = variant == "detok" and (
                        token in NO_SPACE_BEFORE or sentence[t - 1] in NO_SPACE_AFTER or closing or opened
                    )
                    put("" if glue else " ")
                if token == '"':
                    quote_open = not quote_open
                opened = token == '"' and not closing
                tokens.append((length, length + len(token)))
                put(token)
            boundaries.append(length)
        boundaries.pop()  # the document's end is no boundary to find
        doc_ends.append(length)
    return "".join(parts), tokens, boundaries, doc_ends


# -- candidates: text -> sentences -> token spans ---------------------------------------------------
def run_segtok(text: str) -> list[Spans]:
    from segtok.segmenter import split_single
    from segtok.tokenizer import split_contractions, word_tokenizer

    sentences, cursor = [], 0
    for sentence in split_single(text):
        start = text.index(sentence, cursor)
        spans, inner = [], 0
        for token in split_contractions(word_tokenizer(sentence)):
            inner = sentence.index(token, inner)
            spans.append((start + inner, start + inner + len(token)))
            inner += len(token)
        cursor = start + len(sentence)
        if spans:
            sentences.append(spans)
    return sentences


def run_syntok(text: str) -> list[Spans]:
    import syntok.segmenter as segmenter

    return [
        [(t.offset, t.offset + len(t.value)) for t in sentence]
        for paragraph in segmenter.analyze(text)
        for sentence in paragraph
        if len(sentence)
    ]


def run_spacy(text: str) -> list[Spans]:
    import spacy

    nlp = _cached("spacy", lambda: _spacy_pipeline(spacy))
    doc = nlp(text)
    sentences = []
    for sentence in doc.sents:
        spans = [(t.idx, t.idx + len(t.text)) for t in sentence if not t.is_space]
        if spans:
            sentences.append(spans)
    return sentences


def _spacy_pipeline(spacy):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.max_length = 10_000_000
    return nlp


def run_nltk(text: str) -> list[Spans]:
    from nltk.tokenize import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    splitter = _cached("punkt", PunktSentenceTokenizer)
    words = _cached("treebank", NLTKWordTokenizer)
    sentences = []
    for start, end in splitter.span_tokenize(text):
        spans = [(start + a, start + b) for a, b in words.span_tokenize(text[start:end])]
        if spans:
            sentences.append(spans)
    return sentences


_CACHE: dict = {}


def _cached(name, make):
    if name not in _CACHE:
        _CACHE[name] = make()
    return _CACHE[name]


def run_ours(text: str) -> list[Spans]:
    """What ships: data/tokenize.py (NLTK + an abbreviation list, line and punctuation rules)."""
    from data.tokenize import split_text

    return [[(t.start, t.end) for t in sentence.tokens] for sentence in split_text(text)]


RUNNERS = {"segtok": run_segtok, "syntok": run_syntok, "spacy": run_spacy, "nltk": run_nltk, "data.tokenize": run_ours}
MODULES = {"segtok": "segtok", "syntok": "syntok", "spacy": "spacy", "nltk": "nltk", "data.tokenize": "data.tokenize"}


def version(name: str) -> str:
    from importlib.metadata import version as dist_version

    return "(NLTK " + dist_version("nltk") + ")" if name == "data.tokenize" else dist_version(name)


def available(name: str) -> bool:
    try:
        __import__(MODULES[name])
        __import__("nltk") if name == "data.tokenize" else None
        return True
    except ImportError:
        return False


# -- scoring --------------------------------------------------------------------------------------
def prf(gold: set, found: set) -> tuple[float, float, float]:
    correct = len(gold & found)
    p = correct / len(found) if found else 0.0
    r = correct / len(gold) if gold else 0.0
    return 100 * p, 100 * r, 100 * (2 * p * r / (p + r) if p + r else 0.0)


def measure(name: str, documents: dict[str, list], repeats: int = 3) -> dict:
    run = RUNNERS[name]
    result: dict = {"candidate": name, "version": version(name)}
    for variant in ("spaces", "detok"):
        text, gold_tokens, gold_boundaries, doc_ends = build_text(documents["all"], variant)
        sentences = run(text)
        found_tokens = {span for sentence in sentences for span in sentence}
        ends = set(doc_ends)
        found_boundaries = {sentence[-1][1] for sentence in sentences} - ends
        result[variant] = {
            "tokens": prf(set(gold_tokens), found_tokens),
            "boundaries": prf(set(gold_boundaries), found_boundaries),
            "disagreements": disagreements(text, gold_tokens, found_tokens),
        }
    text, gold_tokens, _, _ = build_text(documents["all"], "detok")
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(text)
        seconds.append(time.perf_counter() - started)
    result["tokens_per_second"] = len(gold_tokens) / min(seconds)
    result["gold_tokens"] = len(gold_tokens)
    return result


def disagreements(text: str, gold: Spans, found: set, top: int = 6) -> list[tuple[str, str, int]]:
    """The most frequent gold tokens the candidate splits differently, with what it made of them."""
    by_start: dict[int, list[tuple[int, int]]] = {}
    for span in found:
        by_start.setdefault(span[0], []).append(span)
    counts: Counter = Counter()
    found_sorted = sorted(found)
    import bisect

    for start, end in gold:
        if (start, end) in found:
            continue
        first = bisect.bisect_left(found_sorted, (start, -1))
        pieces = []
        for span in found_sorted[max(first - 1, 0) :]:
            if span[0] >= end:
                break
            if span[1] > start:
                pieces.append(text[span[0] : span[1]])
        counts[(text[start:end], " | ".join(pieces))] += 1
    return [(g, f, n) for (g, f), n in counts.most_common(top)]


# -- report ---------------------------------------------------------------------------------------
def table(results: list[dict]) -> str:
    rows = [
        "| candidate | tokens P / R / F1, spaces-joined | tokens P / R / F1, detokenised | sentence boundaries "
        "P / R / F1 (detok) | gold tokens / s (1 thread) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        rows.append(
            f"| {r['candidate']} {r['version']} | {fmt(r['spaces']['tokens'])} | {fmt(r['detok']['tokens'])} | "
            f"{fmt(r['detok']['boundaries'])} | {r['tokens_per_second']:,.0f} |"
        )
    return "\n".join(rows)


def fmt(values) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def examples(results: list[dict]) -> str:
    lines = []
    for r in results:
        shown = "; ".join(f"`{g}` → `{f}` ({n})" for g, f, n in r["detok"]["disagreements"])
        lines.append(f"* {r['candidate']}: {shown}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--also-python", help="another interpreter for the candidates this one lacks")
    parser.add_argument("--json", action="store_true", help="print the measurements as JSON, write nothing")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    names = [n for n in args.candidates.split(",") if n]
    documents = {"all": read_documents(CONLL / "eng.testa") + read_documents(CONLL / "eng.testb")}
    here = [n for n in names if available(n)]
    elsewhere = [n for n in names if n not in here]
    results = [measure(n, documents) for n in here]
    if args.json:
        print(json.dumps(results))
        return 0
    if elsewhere and args.also_python:
        out = subprocess.run(
            [args.also_python, __file__, "--json", "--candidates", ",".join(elsewhere)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results += json.loads(out)
    missing = [n for n in names if n not in {r["candidate"] for r in results}]
    results.sort(key=lambda r: names.index(r["candidate"]))
    report = table(results)
    print(report)
    print(examples(results))
    if missing:
        print(f"not measured (not importable): {', '.join(missing)}")
    if args.no_write:
        return 0
    body = f"""## Raw-text tokenisers (`benchmarks/tokenizer_choice.py`)

Command: `{command_line()}` (revision {git_revision()}). Machine: {machine()}.

CoNLL-2003 dev + test ({results[0]["gold_tokens"]:,} tokens) turned back into running text (one paragraph per
document), then split and tokenised again; spans must match the gold tokens exactly. *spaces-joined*:
the tokens joined by single spaces (pre-tokenised input); *detokenised*: simple rules attach
punctuation, clitics and quotes. Sentence boundaries are scored inside documents on the detokenised
text; CoNLL's headlines and datelines carry no final punctuation, so recall stays far from 100 for
every splitter. Speed counts gold tokens per second for sentences + tokens + offsets. spaCy ran in a
side environment (`python -m venv ENV && ENV/bin/pip install spacy`, given as `--also-python ENV/bin/python`).

{report}

Most frequent disagreements (detokenised; gold → what the candidate made of it, count):

{examples(results)}

**Chosen: `data.tokenize`**, NLTK's Punkt sentence splitter and improved Treebank word tokenizer with
a list of common abbreviations (Punkt's trained English model is a download; without the list,
Punkt ends sentences after "U.S." and the word tokenizer then splits its period: the `nltk` row).
It is the closest to CoNLL-2003 on tokens and on sentence boundaries, and NLTK is a dependency
already (for WordNet), actively maintained, pure Python. segtok (flair's choice) keeps `,"` as one
token and splits a spaced `'s` into `'` `s`; syntok drops hyphens from tokens (`York-based` →
`York`, `based`) and splits `U.S.`; spaCy's rule-based tokenizer is the fastest but splits
hyphenated words and dates (`1996-08-30` → 5 tokens), unlike CoNLL, and brings 43 packages
(332 MB in a fresh environment). What all of them miss is CoNLL's own convention for list
numbers (`1.` is one token there) and its headlines without final punctuation.
"""
    write_section(REPO / "docs" / "benchmarks.md", "tokenizers", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
