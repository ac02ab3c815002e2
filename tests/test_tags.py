"""Tag schemes: detection, conversion, scheme membership and CRF transition constraints."""

from __future__ import annotations

import pytest

from data.tags import (
    Span,
    TagSchemeError,
    allowed_end_labels,
    allowed_start_labels,
    allowed_transitions,
    bioes_to_iob2,
    check_tags_in_scheme,
    convert,
    detect_scheme,
    extract_spans,
    iob1_to_iob2,
    iob2_to_bioes,
    iob2_to_iob1,
    is_valid_transition,
    normalize_scheme,
    split_tag,
)

# The same two sentences in every scheme: "Peter Blackburn | Paris | Bonn" (adjacent LOCs)
# and a sentence with no entity.
IOB1 = [["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "O"], ["O", "O"]]
IOB2 = [["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "O"], ["O", "O"]]
BIOES = [["B-PER", "E-PER", "O", "S-LOC", "S-LOC", "O"], ["O", "O"]]
IO = [["I-PER", "I-PER", "O", "I-LOC", "I-LOC", "O"], ["O", "O"]]


def test_split_tag_splits_at_the_first_hyphen_only():
    assert split_tag("B-PER") == ("B", "PER")
    assert split_tag("I-geo-loc") == ("I", "geo-loc")
    assert split_tag("O") == ("O", "")


def test_scheme_aliases_are_normalised_and_unknown_names_rejected():
    assert normalize_scheme("bio") == "IOB2"
    assert normalize_scheme("IOBES") == "BIOES"
    with pytest.raises(ValueError, match="unknown tag scheme"):
        normalize_scheme("BILOU")


@pytest.mark.parametrize(("corpus", "expected"), [(IOB1, "IOB1"), (IOB2, "IOB2"), (BIOES, "BIOES"), (IO, "IO")])
def test_detect_scheme(corpus, expected):
    assert detect_scheme(corpus) == expected


def test_detect_scheme_without_entities_defaults_to_iob2():
    assert detect_scheme([["O", "O"], []]) == "IOB2"


def test_detect_scheme_is_not_flipped_by_one_stray_tag():
    # Many IOB2 entities and one stray S- tag: still IOB2, so the reader can reject the S-.
    corpus = [["B-PER", "I-PER", "O"]] * 5 + [["S-LOC"]]
    assert detect_scheme(corpus) == "IOB2"


def test_iob1_to_iob2():
    assert iob1_to_iob2(IOB1[0]) == IOB2[0]
    # I-X after another type opens a new entity.
    assert iob1_to_iob2(["I-PER", "I-LOC", "I-LOC"]) == ["B-PER", "B-LOC", "I-LOC"]


def test_iob2_to_iob1_keeps_b_only_between_same_type_neighbours():
    assert iob2_to_iob1(IOB2[0]) == IOB1[0]
    assert iob2_to_iob1(["B-PER", "B-LOC"]) == ["I-PER", "I-LOC"]


def test_iob2_to_bioes_and_back():
    assert iob2_to_bioes(IOB2[0]) == BIOES[0]
    assert bioes_to_iob2(BIOES[0]) == IOB2[0]
    assert iob2_to_bioes(["B-ORG", "I-ORG", "I-ORG"]) == ["B-ORG", "I-ORG", "E-ORG"]


def test_convert_to_io_merges_adjacent_same_type_entities():
    assert convert(IOB2[0], "IOB2", "IO") == IO[0]
    assert convert(IO[0], "IO", "IOB2") == ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]


@pytest.mark.parametrize("source", ["IOB1", "IOB2", "BIOES"])
@pytest.mark.parametrize("target", ["IOB1", "IOB2", "BIOES"])
def test_every_conversion_preserves_the_spans(source, target):
    corpora = {"IOB1": IOB1, "IOB2": IOB2, "BIOES": BIOES}
    expected = corpora[target][0]
    assert convert(corpora[source][0], source, target) == expected
    assert extract_spans(expected) == [Span("PER", 0, 2), Span("LOC", 3, 4), Span("LOC", 4, 5)]


def test_convert_repairs_ill_formed_iob2_like_conlleval():
    assert convert(["O", "I-PER", "I-PER", "I-LOC"], "IOB2", "IOB2") == [
        "O",
        "B-PER",
        "I-PER",
        "B-LOC",
    ]


def test_convert_rejects_tags_outside_the_source_scheme():
    with pytest.raises(TagSchemeError):
        convert(["S-PER"], "IOB2", "BIOES")


def test_extract_spans_is_lenient():
    assert extract_spans(["I-PER", "I-PER"]) == [Span("PER", 0, 2)]  # starts with I-
    assert extract_spans(["I-PER", "I-LOC"]) == [Span("PER", 0, 1), Span("LOC", 1, 2)]
    assert extract_spans(["I-PER", "B-PER"]) == [Span("PER", 0, 1), Span("PER", 1, 2)]
    assert extract_spans(["S-PER", "S-PER", "B-LOC", "E-LOC"]) == [
        Span("PER", 0, 1),
        Span("PER", 1, 2),
        Span("LOC", 2, 4),
    ]


@pytest.mark.parametrize(
    ("tag", "scheme"),
    [("S-PER", "IOB2"), ("E-LOC", "IOB1"), ("B-LOC", "IO"), ("PER", "BIOES"), ("B-", "IOB2")],
)
def test_check_tags_in_scheme_rejects_foreign_tags(tag, scheme):
    with pytest.raises(TagSchemeError) as caught:
        check_tags_in_scheme(["O", "B-PER" if scheme != "IO" else "I-PER", tag], scheme)
    assert caught.value.index == 2
    assert caught.value.tag == tag


def test_check_tags_in_scheme_accepts_its_own_tags():
    for corpus, scheme in [(IOB1, "IOB1"), (IOB2, "IOB2"), (BIOES, "BIOES"), (IO, "IO")]:
        for tags in corpus:
            check_tags_in_scheme(tags, scheme)


@pytest.mark.parametrize(
    ("prev", "cur", "scheme", "valid"),
    [
        (None, "I-PER", "IOB2", False),
        ("O", "I-PER", "IOB2", False),
        ("B-PER", "I-LOC", "IOB2", False),
        ("B-PER", "I-PER", "IOB2", True),
        ("I-PER", None, "IOB2", True),
        (None, "I-PER", "IOB1", True),
        ("O", "B-PER", "IOB1", False),
        ("I-LOC", "B-PER", "IOB1", False),
        ("I-PER", "B-PER", "IOB1", True),
        ("I-PER", "I-LOC", "IOB1", True),
        ("B-PER", "O", "BIOES", False),
        ("B-PER", "E-PER", "BIOES", True),
        ("E-PER", "I-PER", "BIOES", False),
        ("S-PER", "B-LOC", "BIOES", True),
        ("I-PER", None, "BIOES", False),
        (None, "E-PER", "BIOES", False),
        ("I-PER", "I-LOC", "IO", True),
        ("O", "S-PER", "IOB2", False),  # outside the scheme
    ],
)
def test_is_valid_transition(prev, cur, scheme, valid):
    assert is_valid_transition(prev, cur, scheme) is valid


def test_allowed_transitions_for_bio():
    labels = ["O", "B-PER", "I-PER"]
    assert sorted(allowed_transitions(labels, "IOB2")) == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
        (1, 2),
        (2, 0),
        (2, 1),
        (2, 2),
    ]
    assert allowed_start_labels(labels, "IOB2") == {0, 1}
    assert allowed_end_labels(labels, "IOB2") == {0, 1, 2}


def test_allowed_transitions_for_bioes():
    labels = ["O", "B-X", "I-X", "E-X", "S-X"]
    pairs = set(allowed_transitions(labels, "BIOES"))
    assert pairs == {
        (0, 0),
        (0, 1),
        (0, 4),
        (1, 2),
        (1, 3),
        (2, 2),
        (2, 3),
        (3, 0),
        (3, 1),
        (3, 4),
        (4, 0),
        (4, 1),
        (4, 4),
    }
    assert allowed_start_labels(labels, "BIOES") == {0, 1, 4}
    assert allowed_end_labels(labels, "BIOES") == {0, 3, 4}


def test_every_converted_sequence_follows_the_constraints():
    for corpus, scheme in [(IOB1, "IOB1"), (IOB2, "IOB2"), (BIOES, "BIOES")]:
        for tags in corpus:
            bigrams = zip([None, *tags], [*tags, None])
            assert all(is_valid_transition(prev, cur, scheme) for prev, cur in bigrams)


def test_allowed_transitions_rejects_a_label_outside_the_scheme():
    with pytest.raises(ValueError, match="not IOB2"):
        allowed_transitions(["O", "B-PER", "<pad>"], "IOB2")
