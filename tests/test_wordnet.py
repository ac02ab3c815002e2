"""WordNet 3.0 sense inventory read from the Debian packages through nltk."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.wordnet import INSTALL_HINT, WordNet, WordNetNotFoundError
from data.wsd import read_wsd

WSD_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wsd"


@pytest.fixture(scope="module")
def wordnet() -> WordNet:
    try:
        return WordNet()
    except WordNetNotFoundError as missing:
        pytest.skip(f"WordNet 3.0 not installed: {missing}")


def test_version_is_3_0(wordnet):
    assert wordnet.version == "3.0"


def test_candidates_come_in_wordnet_order(wordnet):
    # index.adj lists "long" synsets starting with 01437963 = long%3:00:02:: (primarily temporal).
    senses = wordnet.candidate_senses("long", "ADJ")
    assert senses[:2] == ["long%3:00:02::", "long%3:00:01::"]
    assert wordnet.first_sense("long", "ADJ") == "long%3:00:02::"
    assert wordnet.first_sense("dog", "NOUN") == "dog%1:05:00::"
    assert wordnet.first_sense("be", "VERB") == "be%2:42:03::"
    assert wordnet.first_sense("well", "ADV") == "well%4:02:00::"


def test_adjectives_include_satellites(wordnet):
    # Every sense of "peculiar" is a satellite (ss_type 5).
    assert wordnet.candidate_senses("peculiar", "ADJ") == [
        "peculiar%5:00:00:strange:00",
        "peculiar%5:00:00:specific:00",
        "peculiar%5:00:00:unusual:00",
        "peculiar%5:00:00:characteristic:00",
    ]


def test_candidates_are_senses_of_the_exact_lemma(wordnet):
    # nltk's lookup would also try the base form "bas"; only "bass" senses belong here.
    senses = wordnet.candidate_senses("bass", "NOUN")
    assert len(senses) == 8
    assert all(sense.startswith("bass%1:") for sense in senses)
    assert wordnet.candidate_senses("change_ringing", "NOUN") == ["change_ringing%1:04:00::"]
    assert wordnet.candidate_senses("English", "NOUN")[0].startswith("english%1:")
    assert wordnet.first_sense("no_such_lemma_xyz", "NOUN") is None


def test_is_sense_key(wordnet):
    assert wordnet.is_sense_key("long%3:00:02::")
    assert wordnet.is_sense_key("peculiar%5:00:00:specific:00")
    assert not wordnet.is_sense_key("long%3:00:09::")
    assert not wordnet.is_sense_key("Long%3:00:02::")  # keys are lower case
    assert not wordnet.is_sense_key("such%5:00:01:specified:00")  # wrong satellite head
    assert not wordnet.is_sense_key("not a key")


def test_pos_without_senses_is_rejected(wordnet):
    with pytest.raises(ValueError, match="DET"):
        wordnet.candidate_senses("the", "DET")


def test_missing_wordnet_says_how_to_install(tmp_path):
    with pytest.raises(WordNetNotFoundError) as caught:
        WordNet(root=tmp_path)
    assert INSTALL_HINT in str(caught.value)
    assert INSTALL_HINT == "apt-get install -y wordnet-base wordnet-sense-index"
    assert "index.sense" in str(caught.value)


def test_every_gold_key_of_all_is_a_candidate_sense(wordnet):
    xml_path, key_path = WSD_DIR / "ALL" / "ALL.data.xml", WSD_DIR / "ALL" / "ALL.gold.key.txt"
    if not xml_path.is_file():
        pytest.skip(f"WSD data not found at {xml_path.parent}")
    corpus = read_wsd(xml_path, key_path)
    for instance in corpus.instances():
        candidates = wordnet.candidate_senses(instance.lemma, instance.pos)
        for key in corpus.gold[instance.instance_id]:
            assert wordnet.is_sense_key(key), key
            assert key in candidates, (instance, key)
