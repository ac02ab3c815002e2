"""Raganato-framework reader: published counts, sentence structure, and bad input."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from data.errors import DataFormatError
from data.wsd import WsdInstance, read_wsd

WSD_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wsd"

# name: (instances, sentences, tokens, instances with more than one gold key), from the README.
EXPECTED = {
    "senseval2": (2282, 242, 5766, 103),
    "senseval3": (1850, 352, 5541, 37),
    "semeval2007": (455, 135, 3201, 4),
    "semeval2013": (1644, 306, 8391, 12),
    "semeval2015": (1022, 138, 2604, 184),
    "ALL": (7253, 1173, 25503, 340),
}

SMALL_XML = """<?xml version="1.0" encoding="UTF-8" ?>
<corpus lang="en" source="toy">
<text id="d000">
<sentence id="d000.s000">
<wf lemma="the" pos="DET">The</wf>
<instance id="d000.s000.t000" lemma="art" pos="NOUN">art</instance>
<wf lemma="be" pos="VERB">is</wf>
<instance id="d000.s000.t001" lemma="long" pos="ADJ">long</instance>
</sentence>
<sentence id="d000.s001">
<instance id="d000.s001.t000" lemma="air_force" pos="NOUN">Air Force</instance>
</sentence>
</text>
</corpus>
"""
SMALL_KEYS = (
    "d000.s000.t000 art%1:09:00::\nd000.s000.t001 long%3:00:02:: long%3:00:01::\nd000.s001.t000 air_force%1:14:00::\n"
)


def dataset_paths(name: str) -> tuple[Path, Path]:
    xml_path = WSD_DIR / name / f"{name}.data.xml"
    key_path = WSD_DIR / name / f"{name}.gold.key.txt"
    if not (xml_path.is_file() and key_path.is_file()):
        pytest.skip(f"WSD data not found at {xml_path.parent} (shared/data is not checked out next to the repo)")
    return xml_path, key_path


def write_corpus(tmp_path: Path, xml: str = SMALL_XML, keys: str = SMALL_KEYS) -> tuple[Path, Path]:
    xml_path, key_path = tmp_path / "toy.data.xml", tmp_path / "toy.gold.key.txt"
    xml_path.write_text(xml, encoding="utf-8")
    key_path.write_text(keys, encoding="utf-8")
    return xml_path, key_path


def test_small_corpus_structure(tmp_path):
    corpus = read_wsd(*write_corpus(tmp_path))
    assert corpus.name == "toy"
    first, second = corpus.sentences
    assert (first.id, first.text_id) == ("d000.s000", "d000")
    assert first.tokens == ["The", "art", "is", "long"]
    assert first.lemmas == ["the", "art", "be", "long"]
    assert first.pos == ["DET", "NOUN", "VERB", "ADJ"]
    assert first.instances == [
        WsdInstance(1, "d000.s000.t000", "art", "NOUN"),
        WsdInstance(3, "d000.s000.t001", "long", "ADJ"),
    ]
    assert second.tokens == ["Air Force"]  # surface forms are kept verbatim
    assert corpus.gold["d000.s000.t001"] == ["long%3:00:02::", "long%3:00:01::"]
    assert corpus.gold_lines["d000.s001.t000"] == 3
    assert corpus.dataset_of("d000.s000.t000") == "toy"


def test_reading_without_keys_gives_empty_gold(tmp_path):
    xml_path, _ = write_corpus(tmp_path)
    corpus = read_wsd(xml_path)
    assert corpus.gold == {} and corpus.key_path is None
    assert len(list(corpus.instances())) == 3


@pytest.mark.parametrize("name", list(EXPECTED))
def test_evaluation_sets_match_published_counts(name):
    instances, sentences, tokens, multi_key = EXPECTED[name]
    corpus = read_wsd(*dataset_paths(name))
    assert len(list(corpus.instances())) == instances == len(corpus.gold)
    assert len(corpus.sentences) == sentences
    assert sum(len(sentence.tokens) for sentence in corpus.sentences) == tokens
    assert sum(len(keys) > 1 for keys in corpus.gold.values()) == multi_key
    for sentence in corpus.sentences:
        assert len(sentence.tokens) == len(sentence.lemmas) == len(sentence.pos)
        for instance in sentence.instances:
            assert sentence.lemmas[instance.position] == instance.lemma
            assert sentence.pos[instance.position] == instance.pos


def test_all_splits_into_the_five_datasets():
    corpus = read_wsd(*dataset_paths("ALL"))
    by_dataset = Counter(corpus.dataset_of(instance.instance_id) for instance in corpus.instances())
    assert by_dataset == {name: counts[0] for name, counts in EXPECTED.items() if name != "ALL"}


@pytest.mark.slow
def test_semcor_counts():
    corpus = read_wsd(*dataset_paths("semcor"))
    instances = list(corpus.instances())
    assert len(corpus.sentences) == 37176
    assert len(instances) == 224716
    assert sum(len(sentence.tokens) for sentence in corpus.sentences) == 778587
    assert Counter(instance.pos for instance in instances) == {
        "NOUN": 86662,
        "VERB": 88084,
        "ADJ": 31029,
        "ADV": 18941,
    }
    assert all(len(keys) == 1 for keys in corpus.gold.values())
    assert corpus.sentences[0].tokens[1] == "Fulton_County_Grand_Jury"  # multiwords stay joined


def test_malformed_xml_names_file_and_line(tmp_path):
    broken = SMALL_XML.replace('pos="VERB">is</wf>', 'pos="VERB">is</instance>')
    xml_path, key_path = write_corpus(tmp_path, xml=broken)
    with pytest.raises(DataFormatError) as caught:
        read_wsd(xml_path, key_path)
    assert str(caught.value).startswith(f"{xml_path}:7: ")
    assert "malformed XML" in str(caught.value)


def test_token_without_lemma_names_file_and_line(tmp_path):
    broken = SMALL_XML.replace('<wf lemma="be" pos="VERB">', '<wf pos="VERB">')
    xml_path, key_path = write_corpus(tmp_path, xml=broken)
    with pytest.raises(DataFormatError, match=r"toy\.data\.xml:7: <wf> without a 'lemma' attribute"):
        read_wsd(xml_path, key_path)


def test_instance_without_gold_key(tmp_path):
    keys = "".join(line + "\n" for line in SMALL_KEYS.splitlines() if not line.startswith("d000.s000.t001"))
    xml_path, key_path = write_corpus(tmp_path, keys=keys)
    with pytest.raises(DataFormatError) as caught:
        read_wsd(xml_path, key_path)
    message = str(caught.value)
    assert message.startswith(f"{key_path}: ")
    assert "instance d000.s000.t001" in message and f"{xml_path}:8" in message
    assert "has no gold key" in message


def test_gold_key_for_unknown_instance(tmp_path):
    xml_path, key_path = write_corpus(tmp_path, keys=SMALL_KEYS + "d000.s009.t000 art%1:09:00::\n")
    with pytest.raises(DataFormatError, match=r"toy\.gold\.key\.txt:4: gold key for unknown instance d000\.s009\.t000"):
        read_wsd(xml_path, key_path)


def test_key_line_without_keys(tmp_path):
    xml_path, key_path = write_corpus(tmp_path, keys=SMALL_KEYS.replace(" art%1:09:00::", ""))
    with pytest.raises(DataFormatError, match=r"toy\.gold\.key\.txt:1: expected 'instance_id key"):
        read_wsd(xml_path, key_path)
