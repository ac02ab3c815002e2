"""Span metrics: equality with conlleval.pl on hand-computed cases, and seqeval's strict mode.

Every expected number below was worked out by hand from the Perl script's rules (and agrees
with what conlleval.pl prints for the same ``token gold pred`` file).
"""

from __future__ import annotations

import random

import pytest

from data.conll import format_conll_predictions
from tasks.metrics.spans import (
    ChunkCounts,
    conlleval,
    conlleval_file,
    end_of_chunk,
    format_conlleval_report,
    start_of_chunk,
    strict_f1,
)


def counts(result, chunk_type=None):
    found = result.overall if chunk_type is None else result.per_type[chunk_type]
    return (found.gold, found.predicted, found.correct)


# --------------------------------------------------------------------------- well-formed schemes


def test_iob2_with_a_type_error():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"]]
    result = conlleval(gold, pred)
    assert counts(result) == (2, 2, 1)
    assert (result.tokens, result.correct_tags) == (4, 3)
    assert (result.accuracy, result.precision, result.recall, result.f1) == (75.0, 50.0, 50.0, 50.0)
    assert counts(result, "LOC") == (1, 0, 0)
    assert counts(result, "ORG") == (0, 1, 0)
    assert counts(result, "PER") == (1, 1, 1)


def test_conlleval_report_layout():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"]]
    assert format_conlleval_report(conlleval(gold, pred)) == (
        "processed 4 tokens with 2 phrases; found: 2 phrases; correct: 1.\n"
        "accuracy:  75.00%; precision:  50.00%; recall:  50.00%; FB1:  50.00\n"
        "              LOC: precision:   0.00%; recall:   0.00%; FB1:   0.00  0\n"
        "              ORG: precision:   0.00%; recall:   0.00%; FB1:   0.00  1\n"
        "              PER: precision: 100.00%; recall: 100.00%; FB1: 100.00  1\n"
    )


def test_iob1_adjacent_entities_of_the_same_type():
    # Gold has two LOC chunks "d" and "e"; the prediction merges them into one.
    gold = [["I-PER", "I-PER", "O", "I-LOC", "B-LOC"]]
    pred = [["I-PER", "I-PER", "O", "I-LOC", "I-LOC"]]
    result = conlleval(gold, pred)
    assert counts(result) == (3, 2, 1)
    assert result.accuracy == 80.0
    assert format_conlleval_report(result).splitlines()[:2] == [
        "processed 5 tokens with 3 phrases; found: 2 phrases; correct: 1.",
        "accuracy:  80.00%; precision:  50.00%; recall:  33.33%; FB1:  40.00",
    ]


def test_iob1_gold_against_iob2_prediction_of_the_same_spans_is_perfect():
    result = conlleval([["I-PER", "B-PER"]], [["B-PER", "B-PER"]])
    assert counts(result) == (2, 2, 2)
    assert result.accuracy == 50.0  # the tags differ even though the chunks agree


def test_bioes_is_scored_on_its_chunks():
    gold = [["B-PER", "E-PER", "S-LOC", "S-LOC"]]
    pred = [["B-PER", "E-PER", "S-LOC", "O"]]
    result = conlleval(gold, pred)
    assert counts(result) == (3, 2, 2)
    assert counts(result, "LOC") == (2, 1, 1)
    assert (result.precision, round(result.recall, 2), result.f1) == (100.0, 66.67, 80.0)
    assert result.accuracy == 75.0  # on the BIOES tags themselves


def test_bioes_gives_the_same_chunks_as_its_iob2_form():
    bioes = conlleval([["S-PER", "B-ORG", "I-ORG", "E-ORG"]], [["S-PER", "B-ORG", "E-ORG", "O"]])
    iob2 = conlleval([["B-PER", "B-ORG", "I-ORG", "I-ORG"]], [["B-PER", "B-ORG", "I-ORG", "O"]])
    assert bioes.overall == iob2.overall == ChunkCounts(gold=2, predicted=2, correct=1)


def test_the_perl_rules_alone_do_not_know_s_tags():
    # Why BIOES is converted first: for the Perl rules, S-PER S-PER is one chunk.
    assert not start_of_chunk("S", "S", "PER", "PER")
    assert not end_of_chunk("S", "S", "PER", "PER")
    assert start_of_chunk("I", "B", "PER", "PER")
    assert end_of_chunk("I", "O", "PER", "")


# --------------------------------------------------------------------------- ill-formed sequences


def test_sentence_starting_with_i_counts_as_a_chunk():
    result = conlleval([["B-PER", "I-PER", "O"]], [["I-PER", "I-PER", "O"]])
    assert counts(result) == (1, 1, 1)
    assert round(result.accuracy, 2) == 66.67


def test_i_after_o_starts_a_chunk():
    result = conlleval([["O", "B-LOC", "I-LOC"]], [["O", "I-LOC", "I-LOC"]])
    assert counts(result) == (1, 1, 1)


def test_type_switch_inside_i_tags_starts_a_new_chunk():
    result = conlleval([["B-PER", "B-LOC"]], [["I-PER", "I-LOC"]])
    assert counts(result) == (2, 2, 2)
    assert counts(result, "PER") == (1, 1, 1) and counts(result, "LOC") == (1, 1, 1)


def test_b_after_i_of_the_same_type_splits_the_chunk():
    result = conlleval([["B-PER", "I-PER", "B-PER"]], [["B-PER", "I-PER", "I-PER"]])
    assert counts(result) == (2, 1, 0)
    assert (result.precision, result.recall, result.f1) == (0.0, 0.0, 0.0)


def test_chunks_end_at_sentence_boundaries():
    # Without the boundary "I-PER | I-PER" would be one chunk spanning two sentences.
    result = conlleval([["I-PER"], ["I-PER"]], [["I-PER"], ["I-PER"]])
    assert counts(result) == (2, 2, 2)


def test_several_sentences_mixing_every_case():
    gold = [["B-PER", "I-PER", "O"], ["O", "B-LOC", "I-LOC"], ["B-PER", "B-LOC"], ["B-PER", "I-PER", "B-PER"]]
    pred = [["I-PER", "I-PER", "O"], ["O", "I-LOC", "I-LOC"], ["I-PER", "I-LOC"], ["B-PER", "I-PER", "I-PER"]]
    report = format_conlleval_report(conlleval(gold, pred))
    assert report == (
        "processed 11 tokens with 6 phrases; found: 5 phrases; correct: 4.\n"
        "accuracy:  54.55%; precision:  80.00%; recall:  66.67%; FB1:  72.73\n"
        "              LOC: precision: 100.00%; recall: 100.00%; FB1: 100.00  2\n"
        "              PER: precision:  66.67%; recall:  50.00%; FB1:  57.14  3\n"
    )


def test_empty_input_and_no_chunks():
    result = conlleval([["O", "O"]], [["O", "O"]])
    assert counts(result) == (0, 0, 0)
    assert (result.accuracy, result.f1) == (100.0, 0.0)
    assert format_conlleval_report(conlleval([], [])) == (
        "processed 0 tokens with 0 phrases; found: 0 phrases; correct: 0.\n"
    )


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="sentence 0"):
        conlleval([["O", "O"]], [["O"]])
    with pytest.raises(ValueError):
        conlleval([["O"]], [])


# --------------------------------------------------------------------------- files


def test_scoring_a_written_prediction_file_gives_the_same_result(tmp_path):
    gold = [["B-PER", "I-PER", "O"], ["O", "B-LOC", "I-LOC"], ["B-PER", "B-LOC"]]
    pred = [["I-PER", "I-PER", "O"], ["O", "I-LOC", "O"], ["I-PER", "I-LOC"]]
    tokens = [[f"w{i}" for i in range(len(tags))] for tags in gold]
    path = tmp_path / "pred.txt"
    path.write_text(format_conll_predictions(tokens, gold, pred))
    assert format_conlleval_report(conlleval_file(path)) == format_conlleval_report(conlleval(gold, pred))


def test_conlleval_file_counts_docstart_lines_as_tokens_like_the_script(tmp_path):
    path = tmp_path / "pred.txt"
    path.write_text("-DOCSTART- O O\n\nParis B-LOC B-LOC\n\n")
    assert conlleval_file(path).tokens == 2


# --------------------------------------------------------------------------- seqeval strict mode


def test_strict_and_lenient_agree_on_well_formed_predictions():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"]]
    assert strict_f1(gold, pred, "IOB2") == pytest.approx(conlleval(gold, pred).f1) == 50.0


@pytest.mark.parametrize(
    ("gold", "pred"),
    [
        ([["B-PER", "I-PER", "O"]], [["I-PER", "I-PER", "O"]]),  # starts with I-
        ([["O", "B-LOC", "I-LOC"]], [["O", "I-LOC", "I-LOC"]]),  # I- after O
        ([["B-PER", "B-LOC"]], [["I-PER", "I-LOC"]]),  # I- after another type
    ],
)
def test_strict_mode_ignores_ill_formed_chunks_that_conlleval_accepts(gold, pred):
    assert conlleval(gold, pred).f1 == 100.0
    assert strict_f1(gold, pred, "IOB2") == 0.0


def test_strict_bioes_requires_closed_chunks():
    gold, pred = [["S-PER", "O"]], [["B-PER", "O"]]
    assert conlleval(gold, pred).f1 == 100.0  # B-PER O is read as a one-token chunk
    assert strict_f1(gold, pred, "BIOES") == 0.0
    assert strict_f1(gold, gold, "IOBES") == 100.0


def test_strict_mode_refuses_iob1():
    with pytest.raises(ValueError, match="IOB2 and BIOES"):
        strict_f1([["I-PER"]], [["I-PER"]], "IOB1")


def test_per_type_counts_match_seqeval_default_mode_on_random_iob():
    # seqeval's default mode is itself a port of conlleval: a second, independent check.
    from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

    rng = random.Random(13)
    tags = ["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-MISC"]
    gold = [[rng.choice(tags) for _ in range(rng.randint(1, 9))] for _ in range(60)]
    pred = [[rng.choice(tags) if rng.random() < 0.4 else tag for tag in sent] for sent in gold]
    result = conlleval(gold, pred)
    precision, recall, f1, support = precision_recall_fscore_support(gold, pred, average=None, zero_division=0)
    seqeval_types = sorted({t.split("-", 1)[1] for sent in gold for t in sent if t != "O"})
    for i, chunk_type in enumerate(seqeval_types):
        ours = result.per_type[chunk_type]
        assert ours.gold == support[i]
        assert ours.precision == pytest.approx(100 * precision[i])
        assert ours.recall == pytest.approx(100 * recall[i])
        assert ours.f1 == pytest.approx(100 * f1[i])
