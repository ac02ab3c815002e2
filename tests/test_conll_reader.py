"""CoNLL column reader and prediction writer, on small files and on the real CoNLL-2003."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.conll import format_conll_predictions, read_conll
from data.errors import DataFormatError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

SMALL = (
    "-DOCSTART- -X- O O\n"
    "\n"
    "EU NNP I-NP I-ORG\n"
    "rejects VBZ I-VP O\n"
    "German JJ I-NP I-MISC\n"
    "\n"
    "Peter NNP I-NP I-PER\n"
    "Blackburn NNP I-NP I-PER\n"
    "\n"
    "-DOCSTART- -X- O O\n"
    "\n"
    "Paris NNP I-NP I-LOC\n"
    "Bonn NNP I-NP B-LOC\n"
    "\n"
)


def write(tmp_path: Path, content: str | bytes, name: str = "data.conll") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def read_error(path: Path, **kwargs) -> DataFormatError:
    with pytest.raises(DataFormatError) as caught:
        read_conll(path, **kwargs)
    return caught.value


# --------------------------------------------------------------------------- well-formed input


def test_reads_sentences_documents_and_line_numbers(tmp_path):
    dataset = read_conll(write(tmp_path, SMALL))
    assert [s.tokens for s in dataset.sentences] == [
        ["EU", "rejects", "German"],
        ["Peter", "Blackburn"],
        ["Paris", "Bonn"],
    ]
    assert [s.line for s in dataset.sentences] == [3, 7, 12]
    assert [s.doc_id for s in dataset.sentences] == [0, 0, 1]
    assert dataset.sentences[0].columns["pos"] == ["NNP", "VBZ", "JJ"]
    assert dataset.tags()[2] == ["I-LOC", "B-LOC"]
    assert dataset.scheme == "IOB1"
    assert dataset.summary() == "2 documents, 3 sentences, 7 tokens"
    assert dataset.stats.entities == {"LOC": 2, "MISC": 1, "ORG": 1, "PER": 1}


def test_docstart_is_a_boundary_even_without_a_blank_line(tmp_path):
    content = "a x y O\n-DOCSTART- -X- O O\nb x y O\n"
    dataset = read_conll(write(tmp_path, content))
    assert dataset.tokens() == [["a"], ["b"]]
    assert [s.doc_id for s in dataset.sentences] == [0, 1]
    assert dataset.stats.documents == 2


def test_file_without_docstart_is_one_document(tmp_path):
    dataset = read_conll(write(tmp_path, "a I-PER\n\nb O\n"), columns=2)
    assert dataset.stats.documents == 1


def test_crlf_line_endings(tmp_path):
    dataset = read_conll(write(tmp_path, SMALL.replace("\n", "\r\n")))
    assert dataset.summary() == "2 documents, 3 sentences, 7 tokens"
    assert dataset.tags()[0] == ["I-ORG", "O", "I-MISC"]  # no "\r" left on the last column


def test_utf8_bom_is_ignored(tmp_path):
    dataset = read_conll(write(tmp_path, b"\xef\xbb\xbf" + SMALL.encode()))
    assert dataset.stats.documents == 2
    assert dataset.sentences[0].tokens[0] == "EU"


def test_no_final_blank_line(tmp_path):
    dataset = read_conll(write(tmp_path, SMALL.rstrip("\n")))
    assert dataset.tokens()[-1] == ["Paris", "Bonn"]
    assert dataset.stats.tokens == 7


def test_several_blank_lines_in_a_row(tmp_path):
    dataset = read_conll(write(tmp_path, "\n\n" + SMALL.replace("\n\n", "\n\n\n  \n") + "\n\n"))
    assert dataset.summary() == "2 documents, 3 sentences, 7 tokens"
    assert [s.line for s in dataset.sentences] == [7, 13, 22]


def test_two_column_files_tab_or_spaces(tmp_path):
    tabbed = read_conll(write(tmp_path, "@paul\tB-person\nhi\tO\n"), columns=2, tag_column="tag")
    spaced = read_conll(write(tmp_path, "@paul   B-person\nhi O\n", "b"), columns=("token", "ner"))
    assert tabbed.tokens() == spaced.tokens() == [["@paul", "hi"]]
    assert tabbed.tags() == spaced.tags() == [["B-person", "O"]]
    assert tabbed.scheme == "IOB2"


def test_tab_separated_tokens_may_contain_spaces(tmp_path):
    dataset = read_conll(write(tmp_path, "New York\tB-LOC\n"), columns=2)
    assert dataset.tokens() == [["New York"]]


def test_separator_is_decided_by_the_first_token_line_not_docstart(tmp_path):
    dataset = read_conll(write(tmp_path, "-DOCSTART- O\n\nNew York\tB-LOC\n"), columns=2)
    assert dataset.tokens() == [["New York"]]
    assert dataset.stats.documents == 1


def test_no_break_space_inside_a_token_is_not_a_separator(tmp_path):
    dataset = read_conll(write(tmp_path, "1\u00a0000 O\n"), columns=2)
    assert dataset.tokens() == [["1\u00a0000"]]


def test_target_scheme_converts_tags_but_stats_keep_the_file_scheme(tmp_path):
    dataset = read_conll(write(tmp_path, SMALL), target_scheme="BIOES")
    assert dataset.scheme == "IOB1"
    assert dataset.output_scheme == "BIOES"
    assert dataset.tags() == [["S-ORG", "O", "S-MISC"], ["B-PER", "E-PER"], ["S-LOC", "S-LOC"]]
    assert dataset.stats.entity_count == 5


def test_invalid_transitions_are_counted_not_dropped(tmp_path):
    # "O B-LOC" is ill-formed IOB1 (B- only after the same type): kept and counted.
    dataset = read_conll(write(tmp_path, "a I-PER\nb O\nc B-LOC\nd I-LOC\n"), columns=2, scheme="IOB1")
    assert dataset.stats.invalid_transitions == 1
    assert dataset.stats.tokens == 4


# --------------------------------------------------------------------------- bad input


def test_wrong_number_of_columns(tmp_path):
    error = read_error(write(tmp_path, SMALL.replace("rejects VBZ I-VP O", "rejects VBZ O")))
    assert error.line == 4
    assert "expected 4 columns" in str(error) and "found 3" in str(error)
    assert str(error).startswith(f"{tmp_path / 'data.conll'}:4: ")


def test_unknown_tag_with_a_label_set(tmp_path):
    labels = {"O", "I-PER", "I-ORG", "I-LOC", "B-LOC"}
    error = read_error(write(tmp_path, SMALL), labels=labels)
    assert error.line == 5
    assert "unknown tag 'I-MISC'" in str(error)


def test_tag_outside_the_declared_scheme(tmp_path):
    content = "Peter B-PER\nBlackburn E-PER\n"
    error = read_error(write(tmp_path, content), columns=2, scheme="IOB1")
    assert error.line == 2
    assert "'E-PER'" in str(error) and "IOB1" in str(error)


def test_stray_tag_outside_the_detected_scheme(tmp_path):
    content = "".join(f"w{i} B-PER\nv{i} I-PER\n\n" for i in range(4)) + "Paris S-LOC\n"
    error = read_error(write(tmp_path, content), columns=2)
    assert error.line == 13
    assert "'S-LOC'" in str(error) and "detected scheme IOB2" in str(error)


def test_non_utf8_bytes(tmp_path):
    content = SMALL.encode().replace(b"Blackburn", b"Blackb\xfcrn")
    error = read_error(write(tmp_path, content))
    assert error.line == 8
    assert "0xfc" in str(error) and "UTF-8" in str(error)


def test_empty_file(tmp_path):
    error = read_error(write(tmp_path, ""))
    assert "empty" in str(error)


def test_file_with_no_sentences(tmp_path):
    error = read_error(write(tmp_path, "-DOCSTART- -X- O O\n\n\n"))
    assert "no sentences" in str(error)


# --------------------------------------------------------------------------- writing


def test_format_conll_predictions_format():
    text = format_conll_predictions(
        [["Peter", "Blackburn"], ["Paris"]], [["B-PER", "I-PER"], ["B-LOC"]], [["B-PER", "O"], ["B-LOC"]]
    )
    assert text == "Peter B-PER B-PER\nBlackburn I-PER O\n\nParis B-LOC B-LOC\n\n"


def test_format_conll_predictions_rejects_mismatched_lengths_and_spaces():
    with pytest.raises(ValueError, match="sentence 0"):
        format_conll_predictions([["a", "b"]], [["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="whitespace"):
        format_conll_predictions([["New York"]], [["O"]], [["O"]])


# --------------------------------------------------------------------------- real data

CONLL2003_COUNTS = {
    "eng.train": (946, 14041, 203621, 23499, {"LOC": 7140, "MISC": 3438, "ORG": 6321, "PER": 6600}),
    "eng.testa": (216, 3250, 51362, 5942, None),
    "eng.testb": (231, 3453, 46435, 5648, None),
}


@pytest.mark.parametrize("name", sorted(CONLL2003_COUNTS))
def test_conll2003_counts(name):
    path = SHARED_DATA / "conll2003" / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared data folder is not next to the repository")
    documents, sentences, tokens, entities, per_type = CONLL2003_COUNTS[name]
    dataset = read_conll(path)
    assert dataset.scheme == "IOB1"
    assert (dataset.stats.documents, dataset.stats.sentences, dataset.stats.tokens) == (
        documents,
        sentences,
        tokens,
    )
    assert dataset.stats.entity_count == entities
    if per_type is not None:
        assert dataset.stats.entities == per_type
    assert dataset.summary() == f"{documents} documents, {sentences} sentences, {tokens} tokens"
