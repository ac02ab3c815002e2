"""Raw text -> sentences -> tokens (data/tokenize.py): offsets always point into the original
string, CoNLL-2003-style tokens, line breaks end sentences, long sentences are cut; and CoNLL files
are recognised by their structure, never by a word count (data/conll.looks_like_conll)."""

from __future__ import annotations

import random
import time

import pytest

from data.conll import looks_like_conll, read_conll_tokens
from data.errors import DataFormatError, DataUsageError
from data.tokenize import MAX_SENTENCE_TOKENS, join_tokens, read_sentences, split_lines, split_text
from helpers import SENTENCES, shared_path, write_conll


def check_offsets(text: str, sentences) -> None:
    """Every sentence and token is the original text at its offsets; tokens hold no white space or
    control character, and nothing overlaps or goes backwards."""
    last = 0
    for sentence in sentences:
        assert text[sentence.start : sentence.end] == sentence.text
        assert sentence.tokens and sentence.tokens[0].start == sentence.start
        assert sentence.tokens[-1].end == sentence.end
        for token in sentence.tokens:
            assert text[token.start : token.end] == token.text
            assert token.start >= last and token.end > token.start
            assert not any(c.isspace() or ord(c) < 32 or 127 <= ord(c) < 160 or c in "\u200b\ufeff" for c in token.text)
            last = token.end


def test_conll_style_tokens_and_sentences_with_offsets():
    text = "Alan Turing worked at Bletchley Park. He didn't like U.S. food (really!). Mr. Smith paid $4.50."
    sentences = split_text(text)
    check_offsets(text, sentences)
    assert [s.words for s in sentences] == [
        ["Alan", "Turing", "worked", "at", "Bletchley", "Park", "."],
        ["He", "did", "n't", "like", "U.S.", "food", "(", "really", "!", ")", "."],
        ["Mr.", "Smith", "paid", "$", "4.50", "."],
    ]
    assert (sentences[0].start, sentences[0].end) == (0, 37) and sentences[1].start == 38
    assert [t.text for t in split_text("New York-based firms, 1996-08-30.")[0].tokens] == [
        "New",
        "York-based",
        "firms",
        ",",
        "1996-08-30",
        ".",
    ]


def test_offsets_survive_unicode_tabs_controls_and_mixed_newlines():
    text = (
        "\ufeffZoë's café — naïve 漢字 😀 e\u0301te.\tSecond\x00sentence\x1bhere!\r\n"
        "Third\u00a0line\rFourth line\u2028Fifth\x0cline\n\n\t  \r\nLast one"
    )
    sentences = split_text(text)
    check_offsets(text, sentences)
    words = [s.words for s in sentences]
    assert ["Second", "sentence", "here", "!"] in words  # NUL and ESC separate tokens
    assert ["Third", "line"] in words and ["Fourth", "line"] in words  # \r\n, a lone \r, U+2028 end lines
    assert ["Fifth", "line"] in words and words[-1] == ["Last", "one"]
    assert words[0][:2] == ["Zoë", "'s"] and "😀" in words[0] and "e\u0301te" in words[0]


def test_a_line_break_ends_a_sentence_and_blank_text_has_none():
    assert [s.words for s in split_text("Peter visited Britain\nEU said\n")] == [
        ["Peter", "visited", "Britain"],
        ["EU", "said"],
    ]
    assert split_text("") == [] and split_text(" \n\t\r\n\x00 ") == []


def test_random_text_keeps_every_invariant():
    alphabet = list("ab Z1.,;:!?\"'`()[]{}-_/\\$%&*#@<>«»“”‘’\t\n\r\u00a0\u2009é漢😀\x00\x1b\x85\u2028") + [
        "''",
        "``",
        "n't",
        "'s",
        "...",
        "U.S.",
        "Mr.",
        "  ",
        "\r\n",
    ]
    rng = random.Random(7)
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        sentences = split_text(text, max_tokens=5)
        check_offsets(text, sentences)
        assert all(len(s.tokens) <= 5 for s in sentences)


def test_a_long_line_without_punctuation_is_cut_into_bounded_sentences_quickly():
    text = " ".join(["lorem", "ipsum", "dolor", "sit", "amet"] * 34_000)  # ~1 MB, one line, no period
    started = time.perf_counter()
    sentences = split_text(text)
    assert time.perf_counter() - started < 30
    assert sum(len(s.tokens) for s in sentences) == 170_000
    assert max(len(s.tokens) for s in sentences) == MAX_SENTENCE_TOKENS
    check_offsets(text, sentences[:3] + sentences[-3:])
    with pytest.raises(DataUsageError, match="max_tokens"):
        split_text("a", max_tokens=0)


def test_tokenised_lines_and_token_lists_have_offsets_too():
    text = "EU  rejects\tGerman call\r\n\nPeter Blackburn\n"
    lines = list(split_lines(text))
    assert [n for n, _ in lines] == [1, 2, 3] and lines[1][1] is None
    check_offsets(text, [s for _, s in lines if s is not None])
    assert lines[0][1].words == ["EU", "rejects", "German", "call"]
    joined, sentences = join_tokens([["EU", "rejects"], ["Air Force", "1"]])
    assert joined == "EU rejects\nAir Force 1"
    check_offsets(joined, [sentences[0]])
    assert [(t.text, t.start) for t in sentences[1].tokens] == [("Air Force", 11), ("1", 21)]
    for bad, message in (
        ([["a", ""]], "sentence 1, token 2: empty token"),
        ([["a"], [" "]], "sentence 2, token 1: empty token"),
        ([["a"], []], "sentence 2: no tokens"),
        (["ab"], "sentence 1: expected a list of token strings"),
        ([["a", 3]], "sentence 1, token 2: expected a string"),
    ):
        with pytest.raises(DataUsageError, match=message):
            join_tokens(bad)


def test_files_are_read_as_text_or_tokenised_lines(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_bytes(b"\xef\xbb\xbfHello world. Bye!\r\nNext line\n")
    sentences = read_sentences(raw, "text")
    text = raw.read_bytes()[3:].decode()
    check_offsets(text, sentences)
    assert [s.words for s in sentences] == [["Hello", "world", "."], ["Bye", "!"], ["Next", "line"]]
    assert [s.words for s in read_sentences(raw, "tokenized")] == [["Hello", "world.", "Bye!"], ["Next", "line"]]
    long = tmp_path / "long.txt"
    long.write_text(" ".join(["w"] * 600) + "\n")
    assert [len(s.tokens) for s in read_sentences(long, "tokenized")] == [250, 250, 100]
    for content, fmt, message in (
        ("", "text", "no text"),
        (" \n\t\n", "text", "no text"),
        (" \n\t\n", "tokenized", "no text"),
        ("a b\n\nc\n", "tokenized", "raw.txt:2: empty sentence"),
        ("a\nb\x00c\n", "text", "raw.txt:2: NUL character at column 2"),
    ):
        raw.write_text(content)
        with pytest.raises(DataFormatError, match=message):
            read_sentences(raw, fmt)
    raw.write_bytes(b"fine\r\nstill\rfine\n\xff\n")
    with pytest.raises(DataFormatError, match=r"raw\.txt:3: not valid UTF-8"):
        read_sentences(raw, "text")


# -- CoNLL by its structure ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "Alan Turing broke codes\n",  # four words: once misread as a CoNLL row
        "I got an O\n",  # one line ending in a tag-like word
        "Peter visited Britain\nEU said\n",
        "We got an O\nThey got a B\n",  # same width, but "B" is no tag
        "EU rejects German call\n\nPeter Blackburn NNP I-PER\n",
        "(Reuters) - Stocks fell.\n",
    ],
)
def test_plain_text_is_never_taken_for_conll(tmp_path, text):
    path = tmp_path / "in.txt"
    path.write_text(text)
    assert not looks_like_conll(path)


def test_conll_files_are_recognised(tmp_path):
    assert looks_like_conll(write_conll(tmp_path / "docstart.txt", SENTENCES))
    no_docstart = tmp_path / "plain.conll"
    no_docstart.write_text("EU B-ORG\nrejects O\n\nPeter B-PER\n")
    assert looks_like_conll(no_docstart)
    tabs = tmp_path / "tabs.conll"
    tabs.write_text("New York\tNNP\tB-LOC\nis\tVBZ\tO\n")
    assert looks_like_conll(tabs) and read_conll_tokens(tabs) == [["New York", "is"]]
    assert looks_like_conll(shared_path("conll2003", "eng.testa"))


def test_conll_tokens_for_embedding(tmp_path):
    path = write_conll(tmp_path / "c.txt", SENTENCES[:2])
    assert read_conll_tokens(path) == [[w for w, _ in s] for s in SENTENCES[:2]]
    path.write_text("EU\tNNP\tB-ORG\n\tNN\tO\n")
    with pytest.raises(DataFormatError, match=r"c\.txt:2: empty token"):
        read_conll_tokens(path)


@pytest.mark.slow
def test_conll2003_dev_is_tokenised_back_almost_exactly():
    """The tokeniser's choice rests on this (benchmarks/tokenizer_choice.py has the full comparison): dev
    sentences joined by spaces come back as the same tokens."""
    sentences = read_conll_tokens(shared_path("conll2003", "eng.testa"))
    text = "\n".join(" ".join(s) for s in sentences)
    gold = set()
    offset = 0
    for words in sentences:
        for word in words:
            gold.add((offset, offset + len(word)))
            offset += len(word) + 1
    found = {(t.start, t.end) for s in split_text(text) for t in s.tokens}
    recall = len(gold & found) / len(gold)
    precision = len(gold & found) / len(found)
    assert recall > 0.99 and precision > 0.985, (precision, recall)
