"""Raw text -> sentences -> CoNLL-2003 / Penn-Treebank-style tokens, every one with character
offsets into the string it came from.

``split_text(text)`` is the one tokeniser of the toolkit (``predict`` / ``embed`` ``--format text``
and the Python API use it). It runs NLTK, already a dependency: the Punkt sentence splitter (its
unsupervised defaults plus the common English abbreviations in :data:`ABBREVIATIONS`; Punkt's
trained models would be a download) and NLTK's improved Treebank word tokenizer. Of the libraries
measured on CoNLL-2003 dev + test (segtok, syntok, spaCy's rule-based English tokenizer, NLTK) it
comes closest to CoNLL-2003's own tokens and sentence boundaries; docs/benchmarks.md ("Raw-text
tokenisers") has the figures and ``benchmarks/tokenizer_choice.py`` measures them.

The rules, all of them tested:

* Offsets count code points of the string given: ``text[t.start:t.end] == t.text`` for every
  token, and ``text[s.start:s.end] == s.text`` for every sentence.
* A line break ends a sentence (``\\n``, ``\\r\\n``, a lone ``\\r``, U+2028, U+2029), and so does
  a blank line; inside a line, Punkt finds the sentence ends. One sentence per line, or several,
  both work; text hard-wrapped inside its sentences is cut at its line ends (unwrap it first).
* Control characters (Unicode category Cc: NUL, escape, form feed, ...), all Unicode white space,
  the zero-width space and the byte-order mark separate tokens and are never part of one.
* A sentence of more than ``max_tokens`` tokens (default :data:`MAX_SENTENCE_TOKENS`) is cut into
  consecutive pieces of at most that many: a megabyte of text without sentence punctuation becomes
  many bounded sentences, not one sequence the biLM would have to hold at once.

:func:`split_lines` reads already-tokenised text (one sentence per line, tokens between white
space) with the same offsets; :func:`read_sentences` reads a file either way; :func:`join_tokens`
gives token lists a text to point into (tokens joined by single spaces, sentences by newlines).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from data.errors import DataFormatError, DataUsageError

MAX_SENTENCE_TOKENS = 250

# Punkt without its trained model knows no abbreviation, so "U.S. officials" would end a sentence
# after "U.S." (and the word tokenizer then splits its final period). These are the abbreviations
# CoNLL-2003's news text uses most, in Punkt's form: lower case, without the final period. Words that
# also end sentences as words or at the end of a list ("no.", "sat.", "etc.") are left out.
ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st gen col lt sgt capt cmdr adm gov sen rep rev hon pres messrs
    inc corp co ltd bros plc jan feb mar apr jun jul aug sep sept oct nov dec
    u.s u.k u.n e.u u.s.a e.g i.e vs vol fig approx dept univ ave blvd rd mt ft a.m p.m""".split()
)

_LINE = re.compile("[^\n\r\u2028\u2029]+")
# What becomes a space before splitting (same length, so offsets stay): the \r of \r\n, white space
# other than the line breaks, the control characters (category Cc) other than \n and \r, and the
# zero-width space and byte-order mark.
_SPACED = re.compile("\r(?=\n)|[^\\S\n\r\u2028\u2029]|[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\ufeff]")
_NON_SPACE = re.compile(r"\S+")
_WORD = re.compile(r"\w")
_SPACE = re.compile(r"\s")
# Fallback for a sentence the word tokenizer cannot align to its text (none known): words, numbers
# and single punctuation marks.
_FALLBACK = re.compile(r"\w+(?:[-'.]\w+)*|[^\w\s]")


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its text and ``[start, end)`` in the original string."""

    text: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class TextSentence:
    """One sentence: its text (from its first token's start to its last token's end), where it is
    in the original string, and its tokens (never empty)."""

    text: str
    start: int
    end: int
    tokens: tuple[Token, ...]

    @property
    def words(self) -> list[str]:
        """The tokens' texts: what the biLM and the heads read."""
        return [t.text for t in self.tokens]


def split_text(text: str, max_tokens: int = MAX_SENTENCE_TOKENS) -> list[TextSentence]:
    """Sentences and tokens of raw ``text``, offsets into ``text`` (see the module docstring)."""
    if not isinstance(text, str):
        raise DataUsageError(f"split_text needs a str, got {type(text).__name__}")
    if max_tokens < 1:
        raise DataUsageError(f"max_tokens must be >= 1, got {max_tokens}")
    sentences_of, words_of = _nltk()
    clean = _spaces_for_controls(text)
    sentences: list[TextSentence] = []
    for line in _LINE.finditer(clean):
        offset, line_text = line.start(), line.group()
        if line_text.isspace():
            continue
        segments: list[list[tuple[int, int]]] = []
        for begin, end in sentences_of(line_text):
            spans = _word_spans(words_of, line_text[begin:end], offset + begin)
            if segments and spans and not any(_WORD.search(clean[a:b]) for a, b in spans):
                segments[-1].extend(spans)  # "(really!)." : Punkt ends the sentence at "!", the ")." belongs to it
            elif spans:
                segments.append(spans)
        for spans in segments:
            for piece in range(0, len(spans), max_tokens):
                sentences.append(_sentence(text, spans[piece : piece + max_tokens]))
    return sentences


def split_lines(text: str) -> Iterator[tuple[int, TextSentence | None]]:
    """Already-tokenised text: ``(line number, sentence)`` for every line (1-based; lines end at
    ``\\n``), the tokens being the line's runs of non-space characters; ``None`` for a blank line.
    Offsets are into ``text``."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline opens no line
    offset = 0
    for number, line in enumerate(lines, 1):
        spans = [(offset + m.start(), offset + m.end()) for m in _NON_SPACE.finditer(line)]
        offset += len(line) + 1
        yield number, _sentence(text, spans) if spans else None


def join_tokens(sentences: Sequence[Sequence[str]]) -> tuple[str, list[TextSentence]]:
    """A text for token lists to point into: each sentence's tokens joined by single spaces, the
    sentences by newlines. An empty sentence, or a token that is empty or only white space, is a
    :class:`~data.errors.DataUsageError` naming it (1-based)."""
    parts: list[str] = []
    result: list[TextSentence] = []
    offset = 0
    for s, words in enumerate(sentences, 1):
        if isinstance(words, str) or not isinstance(words, Sequence):
            raise DataUsageError(f"sentence {s}: expected a list of token strings, got {type(words).__name__}")
        if not words:
            raise DataUsageError(f"sentence {s}: no tokens")
        tokens = []
        for t, word in enumerate(words, 1):
            if not isinstance(word, str):
                raise DataUsageError(f"sentence {s}, token {t}: expected a string, got {type(word).__name__}")
            if not word or word.isspace():
                raise DataUsageError(f"sentence {s}, token {t}: empty token {word!r}")
            if tokens:
                offset += 1
            tokens.append(Token(word, offset, offset + len(word)))
            offset += len(word)
        line = " ".join(words)
        result.append(TextSentence(line, tokens[0].start, tokens[-1].end, tuple(tokens)))
        parts.append(line)
        offset += 1  # the newline
    return "\n".join(parts), result


def read_sentences(path: str | Path, input_format: str, max_tokens: int = MAX_SENTENCE_TOKENS) -> list[TextSentence]:
    """The sentences of a file, offsets into its text (:func:`data.text.read_text`): ``text`` is
    raw text (:func:`split_text`), ``tokenized`` one tokenised sentence per line (:func:`split_lines`;
    a blank line is an error naming it). Either way a sentence longer than ``max_tokens`` is cut
    into pieces, and a file without a single token is an error."""
    from data.text import read_text

    if input_format not in ("text", "tokenized"):
        raise DataUsageError(f"input format must be text or tokenized, got {input_format!r}")
    text = read_text(path)
    report_control_characters(path, text, input_format)
    if input_format == "text":
        sentences = split_text(text, max_tokens)
    else:
        sentences = []
        for number, sentence in split_lines(text):
            if sentence is None and text.strip():
                raise DataFormatError(path, number, "empty sentence (expected one tokenised sentence per line)")
            if sentence is not None:
                sentences.extend(_pieces(text, sentence, max_tokens))
    if not sentences:
        raise DataFormatError(path, None, "no text to read: the file is empty or holds only white space")
    return sentences


def report_control_characters(path: str | Path, text: str, input_format: str) -> None:
    """Control characters (ESC, DEL, form feed ...; NUL is already an error) as one counted warning
    (data/warnings.py): raw text reads them as spaces, tokenised text keeps them inside tokens."""
    from data.warnings import (
        CONTROL_CHARACTERS,
        MAX_EXAMPLES,
        control_character_finding,
        describe_control,
        report,
    )

    if input_format == "text":
        finding = control_character_finding(path, "control character read as a space")
        finding.what_plural = "control characters read as spaces"
    else:
        finding = control_character_finding(path)
    for match in CONTROL_CHARACTERS.finditer(text):
        if finding.count >= MAX_EXAMPLES:
            finding.count += 1  # only the first few need their line
            continue
        line_start = text.rfind("\n", 0, match.start()) + 1
        line_end = text.find("\n", match.start())
        line = text[line_start : line_end if line_end >= 0 else len(text)]
        shifted = CONTROL_CHARACTERS.search(line, match.start() - line_start)
        finding.add(text.count("\n", 0, match.start()) + 1, describe_control(line, shifted))
    report(finding)


# -- helpers --------------------------------------------------------------------------------------
def _pieces(text: str, sentence: TextSentence, max_tokens: int) -> list[TextSentence]:
    if len(sentence.tokens) <= max_tokens:
        return [sentence]
    spans = [(t.start, t.end) for t in sentence.tokens]
    return [_sentence(text, spans[i : i + max_tokens]) for i in range(0, len(spans), max_tokens)]


def _sentence(text: str, spans: list[tuple[int, int]]) -> TextSentence:
    start, end = spans[0][0], spans[-1][1]
    return TextSentence(text[start:end], start, end, tuple(Token(text[a:b], a, b) for a, b in spans))


def _spaces_for_controls(text: str) -> str:
    """``text`` with :data:`_SPACED` characters replaced by spaces (same length: offsets are unchanged)."""
    return _SPACED.sub(" ", text)


def _word_spans(words_of, sentence: str, offset: int) -> list[tuple[int, int]]:
    """Token spans of one sentence, shifted by ``offset``; NLTK's, checked, else the fallback."""
    try:
        spans = list(words_of(sentence))
    except (ValueError, IndexError):  # NLTK could not align its tokens with the text
        spans = None
    if spans is None or not _well_formed(sentence, spans):
        spans = [m.span() for m in _FALLBACK.finditer(sentence)]
    return [(offset + a, offset + b) for a, b in spans]


def _well_formed(sentence: str, spans: list[tuple[int, int]]) -> bool:
    last = 0
    for a, b in spans:
        if a < last or b <= a or _SPACE.search(sentence, a, b):
            return False
        last = b
    return True


_TOKENIZERS: tuple | None = None


def _nltk():
    """``(sentence spans of a string, token spans of a sentence)``, built once (NLTK imports in ~1 s)."""
    global _TOKENIZERS
    if _TOKENIZERS is None:
        from nltk.tokenize import NLTKWordTokenizer
        from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

        parameters = PunktParameters()
        parameters.abbrev_types = set(ABBREVIATIONS)
        _TOKENIZERS = (PunktSentenceTokenizer(parameters).span_tokenize, NLTKWordTokenizer().span_tokenize)
    return _TOKENIZERS


__all__ = [
    "ABBREVIATIONS",
    "MAX_SENTENCE_TOKENS",
    "TextSentence",
    "Token",
    "join_tokens",
    "read_sentences",
    "split_lines",
    "split_text",
]
