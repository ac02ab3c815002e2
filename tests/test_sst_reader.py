"""SST reader: tree parsing, the published split statistics, SST-2, phrases, and bad input."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from data.errors import DataFormatError
from data.sst import parse_tree, read_sst

SST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sst"

# From shared/data/README.md.
EXPECTED = {
    "train": (8544, [1092, 2218, 1624, 2322, 1288], 163563, 6920),
    "dev": (1101, [139, 289, 229, 279, 165], 21274, 872),
    "test": (2210, [279, 633, 389, 510, 399], 42405, 1821),
}


def split_path(split: str) -> Path:
    path = SST_DIR / f"{split}.txt"
    if not path.is_file():
        pytest.skip(f"SST data not found at {path} (shared/data is not checked out next to the repo)")
    return path


def write_lines(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "trees.txt"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_parse_tree_keeps_labels_words_and_shape():
    tree = parse_tree("(3 (2 It) (4 (2 's) (3 lovely)))")
    assert tree.label == 3
    assert [child.label for child in tree.children] == [2, 4]
    assert tree.children[0].is_leaf and tree.children[0].word == "It"
    assert tree.leaves() == ["It", "'s", "lovely"]
    assert [node.label for node in tree.subtrees()] == [3, 2, 4, 2, 3]


def test_no_break_space_stays_inside_one_word():
    # SST writes "8 1/2" with a no-break space as a single leaf.
    tree = parse_tree("(2 (2 8\xa01\\/2) (2 .))")
    assert tree.leaves() == ["8\xa01\\/2", "."]


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_split_counts_match_published_statistics(split):
    trees, label_counts, leaves, sst2_size = EXPECTED[split]
    examples = read_sst(split_path(split))
    counts = Counter(example.label for example in examples)
    assert len(examples) == trees
    assert [counts[label] for label in range(5)] == label_counts
    assert sum(len(example.tokens) for example in examples) == leaves
    assert [example.line for example in examples[:3]] == [1, 2, 3]
    assert all(example.is_root for example in examples)

    binary = read_sst(split_path(split), binary=True)
    assert len(binary) == sst2_size
    assert {example.label for example in binary} == {0, 1}


def test_dev_phrases_cover_every_node_of_the_binarised_trees():
    examples = read_sst(split_path("dev"), phrases=True)
    roots = [example for example in examples if example.is_root]
    assert len(roots) == 1101
    # SST trees are binary, so a tree with n leaves has 2n - 1 labelled nodes.
    assert len(examples) == 2 * 21274 - 1101


def test_phrases_and_binary_mapping_on_a_small_file(tmp_path):
    path = write_lines(tmp_path, "(4 (2 a) (3 (1 b) (0 c)))", "(2 (2 d) (2 e))")
    phrases = read_sst(path, phrases=True)
    assert [(ex.tokens, ex.label, ex.line, ex.is_root) for ex in phrases] == [
        (["a", "b", "c"], 4, 1, True),
        (["a"], 2, 1, False),
        (["b", "c"], 3, 1, False),
        (["b"], 1, 1, False),
        (["c"], 0, 1, False),
        (["d", "e"], 2, 2, True),
        (["d"], 2, 2, False),
        (["e"], 2, 2, False),
    ]
    assert [(ex.tokens, ex.label) for ex in read_sst(path, binary=True)] == [(["a", "b", "c"], 1)]
    assert [(ex.tokens, ex.label) for ex in read_sst(path, phrases=True, binary=True)] == [
        (["a", "b", "c"], 1),
        (["b", "c"], 1),
        (["b"], 0),
        (["c"], 0),
    ]


def assert_error_at(path: Path, line: int, column: int, problem: str) -> None:
    with pytest.raises(DataFormatError) as caught:
        read_sst(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: column {column}: "), message
    assert problem in message
    assert caught.value.line == line


def test_unclosed_bracket_is_reported_at_end_of_line(tmp_path):
    path = write_lines(tmp_path, "(3 (2 a) (2 b))", "(3 (2 a) (4 b)")
    assert_error_at(path, 2, 15, "unbalanced brackets: 1 node(s) still open")


def test_extra_closing_bracket_is_reported_where_it_is(tmp_path):
    path = write_lines(tmp_path, "(3 (2 a) (4 b)))")
    assert_error_at(path, 1, 16, "unbalanced brackets")


def test_node_without_label(tmp_path):
    path = write_lines(tmp_path, "(3 (2 a) (4 b))", "(3 (2 a) (4 b))", "(3 (It) (2 b))")
    assert_error_at(path, 3, 5, "node without a label")


def test_node_opening_with_a_subtree_has_no_label(tmp_path):
    path = write_lines(tmp_path, "((2 a) (2 b))")
    assert_error_at(path, 1, 2, "node without a label")


def test_label_outside_0_to_4(tmp_path):
    path = write_lines(tmp_path, "(3 (5 a) (2 b))")
    assert_error_at(path, 1, 5, "label 5 outside 0..4")


def test_empty_line_is_an_error(tmp_path):
    path = write_lines(tmp_path, "(3 (2 a) (2 b))", "", "(1 (2 c) (0 d))")
    assert_error_at(path, 2, 1, "empty line")
