"""Everything tests share: where the shared data lives, tiny random ELMo models on disk, and small
made-up files in each benchmark's format (CoNLL, SST trees, the WSD framework's XML)."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from data.wordnet import DEBIAN_WORDNET_DIR
from elmo_core.random_model import TINY_OPTIONS, write_random_model  # noqa: F401  (tests import them from here)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = SHARED_DATA / "elmo-fixtures"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (shared data lives beside the repository; CI has it)")
    return path


def quiet(*_) -> None:
    """A ``log`` that prints nothing."""


# -- CoNLL-2003-style NER -------------------------------------------------------------------------
SENTENCES = [
    [("EU", "I-ORG"), ("rejects", "O"), ("German", "I-MISC"), ("call", "O")],
    [("Peter", "I-PER"), ("Blackburn", "I-PER")],
    [("BRUSSELS", "I-LOC"), ("1996-08-22", "O")],
    [("Germany", "I-LOC"), ("'s", "O"), ("representative", "O"), ("Werner", "I-PER"), ("Zwingmann", "I-PER")],
    [("The", "O"), ("European", "I-ORG"), ("Commission", "I-ORG"), ("said", "O")],
    [("Britain", "I-LOC"), ("and", "O"), ("France", "I-LOC"), ("agreed", "O")],
]


def write_conll(path: Path, sentences) -> Path:
    lines = ["-DOCSTART- -X- O O", ""]
    for sentence in sentences:
        lines += [f"{w} NN I-NP {t}" for w, t in sentence] + [""]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- SST trees ------------------------------------------------------------------------------------
POSITIVE = ["a great movie", "truly wonderful acting", "great fun", "a wonderful , great film"]
NEGATIVE = ["a terrible movie", "truly awful acting", "awful mess", "a terrible , awful -LRB- bad -RRB- film"]
NEUTRAL = ["a movie", "the film opens friday"]


def tree(words: str, label: int) -> str:
    """A right-branching SST tree: every inner node carries ``label``, the leaves are neutral (2)."""
    tokens = words.split()
    text = f"(2 {tokens[-1]})"
    for token in reversed(tokens[:-1]):
        text = f"({label} (2 {token}) {text})"
    return text if len(tokens) > 1 else f"({label} {tokens[0]})"


def write_trees(path: Path, rows: list[tuple[str, int]]) -> Path:
    path.write_text("".join(tree(words, label) + "\n" for words, label in rows), encoding="utf-8")
    return path


# -- the WSD framework ----------------------------------------------------------------------------
def require_wordnet() -> None:
    """Candidate senses and the first-sense backoff come from WordNet 3.0; skip where it is absent."""
    if not (DEBIAN_WORDNET_DIR / "index.sense").is_file():
        pytest.skip("WordNet 3.0 is not installed (apt-get install -y wordnet-base wordnet-sense-index)")


BANK_LAND, BANK_MONEY = "bank%1:17:01::", "bank%1:14:00::"  # WordNet's first and second noun senses
PLANT_FIRST = "plant%1:06:01::"  # 'industrial plant', WordNet's first sense
DEPOSIT = "deposit%2:40:00::"

# (word, lemma, pos, sense key or None for a plain <wf>)
Token = tuple[str, str, str, "str | None"]
MONEY = [
    ("I", "i", "PRON", None),
    ("robbed", "rob", "VERB", None),
    ("the", "the", "DET", None),
    ("bank", "bank", "NOUN", BANK_MONEY),
    ("and", "and", "CONJ", None),
    ("deposited", "deposit", "VERB", DEPOSIT),
    ("cash", "cash", "NOUN", "cash%1:21:00::"),
]
RIVER = [
    ("we", "we", "PRON", None),
    ("sat", "sit", "VERB", None),
    ("on", "on", "ADP", None),
    ("the", "the", "DET", None),
    ("river", "river", "NOUN", "river%1:17:00::"),
    ("bank", "bank", "NOUN", BANK_LAND),
    (".", ".", ".", None),
]
PLANT = [
    ("the", "the", "DET", None),
    ("plant", "plant", "NOUN", PLANT_FIRST),
    ("near", "near", "ADP", None),
    ("the", "the", "DET", None),
    ("bank", "bank", "NOUN", BANK_MONEY),
]
MULTIWORD = [
    ("The", "the", "DET", None),
    ("Fulton_County", "group", "NOUN", "group%1:03:00::"),
    ("took_place", "take_place", "VERB", "take_place%2:30:00::"),
]


def write_wsd(folder: Path, name: str, sentences: list[list[Token]], prefix: str = "") -> Path:
    """A framework-style ``name/name.data.xml`` + ``name.gold.key.txt``."""
    folder = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    xml, keys = (
        ['<?xml version="1.0" encoding="UTF-8" ?>', f'<corpus lang="en" source="{name}">', f'<text id="{prefix}d000">'],
        [],
    )
    for s, sentence in enumerate(sentences):
        xml.append(f'<sentence id="{prefix}d000.s{s:03d}">')
        t = 0
        for word, lemma, pos, key in sentence:
            if key is None:
                xml.append(f'<wf lemma="{escape(lemma)}" pos="{pos}">{escape(word)}</wf>')
            else:
                instance_id = f"{prefix}d000.s{s:03d}.t{t:03d}"
                t += 1
                xml.append(f'<instance id="{instance_id}" lemma="{lemma}" pos="{pos}">{escape(word)}</instance>')
                keys.append(f"{instance_id} {key}")
        xml.append("</sentence>")
    xml += ["</text>", "</corpus>"]
    (folder / f"{name}.data.xml").write_text("\n".join(xml) + "\n", encoding="utf-8")
    (folder / f"{name}.gold.key.txt").write_text("\n".join(keys) + "\n", encoding="utf-8")
    return folder
