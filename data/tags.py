"""Chunk tag schemes (IOB1, IOB2, BIOES, IO): detection, conversion and valid transitions.

A tag is ``O`` or ``PREFIX-TYPE``; the type may itself contain hyphens (``B-geo-loc``), so a
tag is split at its *first* hyphen, as conlleval.pl does since 2004.

Schemes
-------
``IOB1``  CoNLL-2003: ``I-`` everywhere, ``B-`` only on the first token of an entity that
          directly follows another entity of the same type.
``IOB2``  ("BIO"): every entity starts with ``B-``.
``BIOES`` ("IOBES"): ``S-`` for single-token entities, ``B-``/``I-``/``E-`` otherwise.
``IO``    only ``I-``: two adjacent entities of the same type cannot be told apart.

Spans are decoded leniently, with the chunk rules of conlleval.pl extended to ``S-``/``E-``:
an ``I-X`` (or ``E-X``) that follows ``O``, the sentence start, or a tag of another type opens
a new entity. Every conversion goes through those spans, so ill-formed input is repaired the
way conlleval would read it rather than rejected.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import NamedTuple

from data.errors import DataError, DataUsageError

SCHEMES: tuple[str, ...] = ("IOB1", "IOB2", "BIOES", "IO")

# Other spellings people use for the same schemes.
_SCHEME_ALIASES = {"BIO": "IOB2", "IOBES": "BIOES", "BIOSE": "BIOES"}

_PREFIXES_BY_SCHEME: dict[str, frozenset[str]] = {
    "IOB1": frozenset({"B", "I"}),
    "IOB2": frozenset({"B", "I"}),
    "BIOES": frozenset({"B", "I", "E", "S"}),
    "IO": frozenset({"I"}),
}

OUTSIDE = "O"


class Span(NamedTuple):
    """One entity: its type and the token range ``[start, end)``."""

    type: str
    start: int
    end: int


class TagSchemeError(DataError):
    """A tag does not belong to a scheme; ``index`` is its position in the sequence."""

    def __init__(self, index: int, tag: str, scheme: str, reason: str):
        self.index = index
        self.tag = tag
        self.scheme = scheme
        self.reason = reason
        super().__init__(f"tag {tag!r} at position {index} is not valid in {scheme}: {reason}")


def normalize_scheme(scheme: str) -> str:
    """Return the canonical name (``IOB1``, ``IOB2``, ``BIOES``, ``IO``) of a scheme name."""
    name = scheme.upper()
    name = _SCHEME_ALIASES.get(name, name)
    if name not in SCHEMES:
        raise DataUsageError(f"unknown tag scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    return name


def split_tag(tag: str) -> tuple[str, str]:
    """Split ``B-PER`` into ``("B", "PER")``; ``O`` gives ``("O", "")``."""
    if tag == OUTSIDE:
        return OUTSIDE, ""
    prefix, hyphen, entity_type = tag.partition("-")
    if not hyphen:
        return tag, ""
    return prefix, entity_type


def _tag_problem(tag: str, scheme: str) -> str | None:
    """Why ``tag`` is not a tag of ``scheme``, or None when it is one."""
    if tag == OUTSIDE:
        return None
    prefix, entity_type = split_tag(tag)
    allowed = _PREFIXES_BY_SCHEME[scheme]
    if "-" not in tag:
        return f"expected 'O' or PREFIX-TYPE with PREFIX in {sorted(allowed)}"
    if not entity_type:
        return "the entity type after the prefix is empty"
    if prefix not in allowed:
        return f"prefix {prefix!r} is not used in {scheme} (expected one of {sorted(allowed)})"
    return None


def is_tag_in_scheme(tag: str, scheme: str) -> bool:
    """True when ``tag`` is ``O`` or has a prefix that ``scheme`` uses."""
    return _tag_problem(tag, normalize_scheme(scheme)) is None


def check_tags_in_scheme(tags: Sequence[str], scheme: str) -> None:
    """Raise :class:`TagSchemeError` for the first tag that ``scheme`` does not use.

    This checks prefixes only (``S-PER`` in IOB2, ``E-LOC`` in IOB1, ``B-X`` in IO, a bare
    ``PER``); whether the tags follow each other validly is :func:`is_valid_transition`'s job.
    """
    scheme = normalize_scheme(scheme)
    for index, tag in enumerate(tags):
        problem = _tag_problem(tag, scheme)
        if problem is not None:
            raise TagSchemeError(index, tag, scheme, problem)


# --------------------------------------------------------------------------- spans


def _starts_chunk(prev_prefix: str, prev_type: str, prefix: str, entity_type: str) -> bool:
    if prefix == OUTSIDE:
        return False
    if prefix in ("B", "S"):
        return True
    # I-X / E-X continue only an open chunk (B or I) of the same type.
    return prev_prefix not in ("B", "I") or prev_type != entity_type


def _ends_chunk(prev_prefix: str, prev_type: str, prefix: str, entity_type: str) -> bool:
    if prev_prefix == OUTSIDE:
        return False
    if prev_prefix in ("E", "S"):
        return True
    return prefix in (OUTSIDE, "B", "S") or prev_type != entity_type


def extract_spans(tags: Sequence[str]) -> list[Span]:
    """Decode the entities of one sentence, in any of the four schemes (lenient decoding)."""
    spans: list[Span] = []
    open_start: int | None = None
    prev_prefix, prev_type = OUTSIDE, ""
    for index, tag in enumerate(tags):
        prefix, entity_type = split_tag(tag)
        if prefix not in ("B", "I", "E", "S"):
            prefix, entity_type = OUTSIDE, ""  # bare labels carry no chunk, as in conlleval
        if open_start is not None and _ends_chunk(prev_prefix, prev_type, prefix, entity_type):
            spans.append(Span(prev_type, open_start, index))
            open_start = None
        if _starts_chunk(prev_prefix, prev_type, prefix, entity_type):
            open_start = index
        prev_prefix, prev_type = prefix, entity_type
    if open_start is not None:
        spans.append(Span(prev_type, open_start, len(tags)))
    return spans


def spans_to_tags(spans: Iterable[Span], length: int, scheme: str) -> list[str]:
    """Write non-overlapping ``spans`` as a tag sequence of ``length`` tokens in ``scheme``."""
    scheme = normalize_scheme(scheme)
    tags = [OUTSIDE] * length
    previous: Span | None = None
    for span in sorted(spans, key=lambda s: s.start):
        for index in range(span.start, span.end):
            tags[index] = f"I-{span.type}"
        first = f"B-{span.type}"
        if scheme == "IOB2":
            tags[span.start] = first
        elif scheme == "IOB1":
            touches_same_type = previous is not None and previous.end == span.start and previous.type == span.type
            if touches_same_type:
                tags[span.start] = first
        elif scheme == "BIOES":
            if span.end - span.start == 1:
                tags[span.start] = f"S-{span.type}"
            else:
                tags[span.start] = first
                tags[span.end - 1] = f"E-{span.type}"
        previous = span
    return tags


# --------------------------------------------------------------------------- conversion


def convert(tags: Sequence[str], source: str, target: str) -> list[str]:
    """Convert one sentence's tags from ``source`` to ``target`` scheme.

    Ill-formed input (an ``I-X`` after ``O`` in IOB2, say) is read as conlleval reads it. Going
    to IO loses the boundary between adjacent same-type entities: that is what IO means.
    """
    source, target = normalize_scheme(source), normalize_scheme(target)
    check_tags_in_scheme(tags, source)
    return spans_to_tags(extract_spans(tags), len(tags), target)


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """``I-PER I-PER O I-LOC`` -> ``B-PER I-PER O B-LOC``."""
    return convert(tags, "IOB1", "IOB2")


def iob2_to_iob1(tags: Sequence[str]) -> list[str]:
    """``B-PER I-PER B-PER`` -> ``I-PER I-PER B-PER``."""
    return convert(tags, "IOB2", "IOB1")


def iob2_to_bioes(tags: Sequence[str]) -> list[str]:
    """``B-PER I-PER O B-LOC`` -> ``B-PER E-PER O S-LOC``."""
    return convert(tags, "IOB2", "BIOES")


def bioes_to_iob2(tags: Sequence[str]) -> list[str]:
    """``B-PER E-PER O S-LOC`` -> ``B-PER I-PER O B-LOC``."""
    return convert(tags, "BIOES", "IOB2")


# --------------------------------------------------------------------------- detection


def _scheme_evidence(tag_sequences: Iterable[Sequence[str]]) -> dict[str, int]:
    """Count the patterns that tell the schemes apart."""
    counts = {"E_or_S": 0, "B": 0, "open_end": 0, "I_start": 0, "B_start": 0}
    for tags in tag_sequences:
        prev_prefix, prev_type = OUTSIDE, ""
        for tag in [*tags, OUTSIDE]:  # the sentence end closes any open chunk
            prefix, entity_type = split_tag(tag)
            continues = prev_prefix in ("B", "I") and prev_type == entity_type
            if prefix in ("E", "S"):
                counts["E_or_S"] += 1
            if prefix == "B":
                counts["B"] += 1
                if not continues:
                    counts["B_start"] += 1
            if prefix == "I" and not continues:
                counts["I_start"] += 1
            # An entity whose last token is B-/I- cannot be BIOES.
            if prev_prefix in ("B", "I") and not (prefix in ("I", "E") and continues):
                counts["open_end"] += 1
            prev_prefix, prev_type = prefix, entity_type
    return counts


def detect_scheme(tag_sequences: Iterable[Sequence[str]]) -> str:
    """Guess the scheme of a corpus (one tag list per sentence).

    The decision follows the majority of the evidence, so that a few stray tags are later
    reported by :func:`check_tags_in_scheme` instead of flipping the whole file's scheme:

    * ``BIOES`` when ``E-``/``S-`` tags outnumber entities ending on ``B-``/``I-``;
    * ``IOB1`` when entities opened by ``I-`` outnumber entities opened by ``B-`` after
      ``O``/another type (with no ``B-`` at all this is ``IO``);
    * ``IOB2`` otherwise (also for a corpus with no entity at all).
    """
    counts = _scheme_evidence(tag_sequences)
    if counts["E_or_S"] > counts["open_end"]:
        return "BIOES"
    if counts["I_start"] > counts["B_start"]:
        return "IOB1" if counts["B"] else "IO"
    return "IOB2"


# --------------------------------------------------------------------------- transitions


def is_valid_transition(prev: str | None, cur: str | None, scheme: str) -> bool:
    """May tag ``cur`` follow tag ``prev`` in ``scheme``?

    ``prev=None`` stands for the sentence start and ``cur=None`` for its end. Tags outside
    the scheme are never valid.
    """
    return _is_valid_transition(prev, cur, normalize_scheme(scheme))


# Readers check every bigram of a corpus, and a label set has few distinct bigrams.
@lru_cache(maxsize=65536)
def _is_valid_transition(prev: str | None, cur: str | None, scheme: str) -> bool:
    for tag in (prev, cur):
        if tag is not None and _tag_problem(tag, scheme) is not None:
            return False
    prev_prefix, prev_type = split_tag(prev) if prev is not None else (OUTSIDE, "")
    if cur is None:
        return _may_end_sentence(prev_prefix, scheme)
    cur_prefix, cur_type = split_tag(cur)
    same_type = prev is not None and prev_prefix != OUTSIDE and prev_type == cur_type
    if scheme == "IO":
        return True
    if scheme == "IOB2":
        return cur_prefix != "I" or same_type
    if scheme == "IOB1":
        # B- only separates two adjacent entities of the same type.
        return cur_prefix != "B" or same_type
    return _is_valid_bioes_transition(prev_prefix, cur_prefix, same_type)


def count_invalid_transitions(tags: Sequence[str], scheme: str) -> int:
    """How many bigrams of one sentence (sentence start and end included) ``scheme`` forbids."""
    return len(invalid_transitions(tags, scheme))


def invalid_transitions(tags: Sequence[str], scheme: str) -> list[tuple[int, str | None, str | None]]:
    """The bigrams of one sentence that ``scheme`` forbids, as ``(index, prev, cur)``: ``cur`` is
    ``tags[index]`` (``None`` at the sentence end, where ``index == len(tags)``) and ``prev`` the
    tag before it (``None`` at the sentence start)."""
    scheme = normalize_scheme(scheme)
    bigrams = zip([None, *tags], [*tags, None])
    return [
        (index, prev, cur) for index, (prev, cur) in enumerate(bigrams) if not _is_valid_transition(prev, cur, scheme)
    ]


def _may_end_sentence(last_prefix: str, scheme: str) -> bool:
    if scheme == "BIOES":
        return last_prefix in (OUTSIDE, "E", "S")
    return True


def _is_valid_bioes_transition(prev_prefix: str, cur_prefix: str, same_type: bool) -> bool:
    chunk_is_open = prev_prefix in ("B", "I")
    if cur_prefix in ("I", "E"):
        return chunk_is_open and same_type
    # O, B-, S- may only come when no chunk is open.
    return not chunk_is_open


def allowed_transitions(labels: Sequence[str], scheme: str) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` of label indices such that ``labels[j]`` may follow ``labels[i]``.

    Meant for masking a CRF's transition matrix; see :func:`allowed_start_labels` and
    :func:`allowed_end_labels` for the first and last positions.
    """
    _check_labels(labels, scheme)
    return [
        (i, j)
        for i, prev in enumerate(labels)
        for j, cur in enumerate(labels)
        if is_valid_transition(prev, cur, scheme)
    ]


def allowed_start_labels(labels: Sequence[str], scheme: str) -> set[int]:
    """Indices of the labels a sentence may start with."""
    _check_labels(labels, scheme)
    return {j for j, cur in enumerate(labels) if is_valid_transition(None, cur, scheme)}


def allowed_end_labels(labels: Sequence[str], scheme: str) -> set[int]:
    """Indices of the labels a sentence may end with."""
    _check_labels(labels, scheme)
    return {i for i, prev in enumerate(labels) if is_valid_transition(prev, None, scheme)}


def _check_labels(labels: Sequence[str], scheme: str) -> None:
    # A padding or unknown label in a CRF's label set would silently become unreachable.
    try:
        check_tags_in_scheme(labels, scheme)
    except TagSchemeError as error:
        raise DataUsageError(f"label set is not {error.scheme}: {error}") from error
