"""Stanford Sentiment Treebank reader: one PTB-style tree per line, every node labelled 0..4.

``(3 (2 It) (4 (2 's) (3 lovely)))`` is a tree whose root has sentiment 3; a node is either a
leaf ``(label word)`` or an inner node ``(label subtree subtree ...)``. The sentence label is
the root label. ``binary=True`` gives SST-2: 0/1 -> 0 (negative), 3/4 -> 1 (positive), and
neutral (2) examples are dropped. ``phrases=True`` adds every labelled subtree, the usual way
to train on SST's phrase-level annotation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from data.errors import DataFormatError
from data.text import read_lines

NUM_CLASSES = 5
NEUTRAL = 2
LABEL_NAMES = ("very negative", "negative", "neutral", "positive", "very positive")
BINARY_LABEL_NAMES = ("negative", "positive")

# Only ASCII whitespace separates tokens: a few SST leaves contain a no-break space inside
# one word (``8\xa01\/2``), and Python's \s would split them.
_ASCII_WHITESPACE = " \t\n\r\f\v"
_TOKEN = re.compile(r"\(|\)|[^ \t\n\r\f\v()]+")
_LABELS = {str(label): label for label in range(NUM_CLASSES)}
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(slots=True)
class Tree:
    """A sentiment tree node: a leaf has ``word`` and no children, an inner node the reverse."""

    label: int
    children: list[Tree] = field(default_factory=list)
    word: str | None = None

    @property
    def is_leaf(self) -> bool:
        return self.word is not None

    def leaves(self) -> list[str]:
        return [node.word for node in self.subtrees() if node.word is not None]

    def subtrees(self) -> Iterator[Tree]:
        """Every node, root first, in pre-order (iterative: deep trees must not hit recursion limits)."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


@dataclass(frozen=True)
class SstExample:
    """One training/evaluation item: the words a (sub)tree spans and its label."""

    tokens: list[str]
    label: int
    line: int
    is_root: bool = True


def parse_tree(text: str, *, path: str | Path = "<string>", line: int | None = None) -> Tree:
    """Parse one SST tree. Errors are ``DataFormatError`` naming ``path:line`` and the column."""
    return _TreeParser(text, str(path), line).parse()


class _TreeParser:
    """A bracket parser with an explicit stack (no recursion limit on deep trees).

    The hot loop works on bare token strings; a token's column is only worked out when a
    problem has to be reported, which keeps reading the 8,544 train trees fast.
    """

    def __init__(self, text: str, path: str, line: int | None):
        self.text = text
        self.path = path
        self.line = line

    def error(self, token_index: int, problem: str) -> DataFormatError:
        return DataFormatError(self.path, self.line, f"column {self.column_of(token_index)}: {problem}")

    def column_of(self, token_index: int) -> int:
        """1-based column of the token_index-th token, or just past the text for the end of line."""
        for index, match in enumerate(_TOKEN.finditer(self.text)):
            if index == token_index:
                return match.start() + 1
        return len(self.text.rstrip(_ASCII_WHITESPACE)) + 1

    def parse(self) -> Tree:
        tokens = _TOKEN.findall(self.text)
        if not tokens:
            raise self.error(0, "empty line (expected one tree such as '(3 (2 a) (4 b))')")
        stack: list[Tree] = []
        root: Tree | None = None
        expecting_label = False
        for index, token in enumerate(tokens):
            if root is not None:
                raise self.error(index, f"unbalanced brackets: {token!r} after the tree already closed")
            if expecting_label:
                label = _LABELS.get(token)
                if label is None:
                    self.bad_label(token, index)
                stack[-1].label = label
                expecting_label = False
            elif token == "(":
                node = Tree(-1)
                if stack:
                    parent = stack[-1]
                    if parent.word is not None:
                        raise self.error(index, f"node with word {parent.word!r} cannot also have subtrees")
                    parent.children.append(node)
                stack.append(node)
                expecting_label = True
            elif token == ")":
                if not stack:
                    raise self.error(index, "unbalanced brackets: ')' closes no open node")
                node = stack.pop()
                if node.word is None and not node.children:
                    raise self.error(index, f"node labelled {node.label} has neither a word nor subtrees")
                if not stack:
                    root = node
            else:
                self.attach_word(stack, token, index)
        if stack or root is None:
            raise self.error(len(tokens), f"unbalanced brackets: {len(stack)} node(s) still open at end of line")
        return root

    def bad_label(self, token: str, index: int) -> NoReturn:
        """Raise the right error for a token that is not one of the labels 0..4."""
        if token in ("(", ")"):
            raise self.error(index, "node without a label (expected a sentiment label 0..4 after '(')")
        if _INTEGER.fullmatch(token):
            raise self.error(index, f"label {int(token)} outside 0..4")
        raise self.error(index, f"node without a label: found {token!r} where a sentiment label 0..4 belongs")

    def attach_word(self, stack: list[Tree], word: str, index: int) -> None:
        if not stack:
            raise self.error(index, f"word {word!r} outside any node (expected '(')")
        node = stack[-1]
        if node.word is not None or node.children:
            raise self.error(index, f"unexpected word {word!r}: a node holds one word or subtrees, not both")
        node.word = word


def to_binary(label: int) -> int | None:
    """SST-2 label of a 5-class label; None for neutral (dropped)."""
    if label == NEUTRAL:
        return None
    return 0 if label < NEUTRAL else 1


def examples_from_tree(tree: Tree, line: int, *, phrases: bool = False, binary: bool = False) -> list[SstExample]:
    """The sentence example (and with ``phrases``, one per labelled subtree below the root)."""
    words = tree.leaves()
    spans = _phrase_spans(tree) if phrases else [(tree, 0, len(words))]
    examples = []
    for node, start, end in spans:
        label: int | None = to_binary(node.label) if binary else node.label
        if label is not None:
            examples.append(SstExample(words[start:end], label, line, is_root=node is tree))
    return examples


def _phrase_spans(tree: Tree) -> list[tuple[Tree, int, int]]:
    """(node, start, end) word spans of every node, pre-order, in one pass.

    Collecting each node's leaves separately costs O(words x depth) and made reading the
    train split with phrases several times slower.
    """
    nodes = list(tree.subtrees())
    span: dict[int, tuple[int, int]] = {}
    next_word = 0
    for node in nodes:
        if node.is_leaf:
            span[id(node)] = (next_word, next_word + 1)
            next_word += 1
    for node in reversed(nodes):  # pre-order reversed visits children before their parent
        if not node.is_leaf:
            span[id(node)] = (span[id(node.children[0])][0], span[id(node.children[-1])][1])
    return [(node, *span[id(node)]) for node in nodes]


def read_trees(path: str | Path) -> list[tuple[int, Tree]]:
    """(line number, tree) for every line; a blank line is an error, not a separator. Lines are
    read by :func:`data.text.read_lines` (strict UTF-8, errors name FILE:LINE)."""
    return [(number, parse_tree(text.rstrip("\r\n"), path=path, line=number)) for number, text in read_lines(path)]


def read_sst(path: str | Path, phrases: bool = False, binary: bool = False) -> list[SstExample]:
    """Read an SST split; sentence examples carry the root label (see the module docstring)."""
    examples: list[SstExample] = []
    for number, tree in read_trees(path):
        examples.extend(examples_from_tree(tree, number, phrases=phrases, binary=binary))
    return examples
