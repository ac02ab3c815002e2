"""What a prediction looks like outside the toolkit: one object per sentence, with its text, where
it is in the input, its tokens and the task's answer. ``elmo-tasks predict --output X.jsonl``
writes these objects as JSON lines and the Python API (:mod:`tasks.api`) returns them, both from
:meth:`tasks.base.Task.records`: one code path.

Offsets (``start``, ``end``, ``[start, end)``) count code points of the input text, a leading
byte-order mark not counted, so ``input[start:end] == text`` for every sentence, token, entity
and sense instance. Raw and tokenised input are their own text; a labelled file (CoNLL columns,
SST trees, the WSD framework's XML) and token lists given to the API have none, so they point
into the text made of their tokens: each sentence's tokens joined by single spaces, the sentences
by newlines (:func:`data.tokenize.join_tokens`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path

from data.tokenize import TextSentence, Token, join_tokens


@dataclass
class PredictedSentence:
    """A sentence of the input: ``text == input[start:end]`` and its tokens."""

    text: str
    start: int
    end: int
    tokens: list[Token]

    @classmethod
    def of(cls, sentence: TextSentence, **fields):
        return cls(sentence.text, sentence.start, sentence.end, list(sentence.tokens), **fields)

    def span_text(self, start: int, end: int) -> str:
        """The input between two offsets that lie inside this sentence."""
        return self.text[start - self.start : end - self.start]

    def to_json(self) -> dict:
        """The object as JSON-able dicts and lists (``dataclasses.asdict``'s result, ~10x faster)."""
        return _plain(self)


@dataclass
class TaggedSentence(PredictedSentence):
    """A tagger's answer: one tag per token (POS, chunk or NER tags, in the scheme of the run's files)."""

    tags: list[str]


@dataclass
class Entity:
    """A named entity: ``input[start:end] == text``."""

    text: str
    label: str
    start: int
    end: int


@dataclass
class EntitySentence(TaggedSentence):
    """NER: the tags and the entities they make (decoded as conlleval reads them)."""

    entities: list[Entity]


@dataclass
class ClassifiedSentence(PredictedSentence):
    """A sentence classifier's answer: the label, its display name and every label's probability."""

    label: str
    label_name: str
    probabilities: dict[str, float]


@dataclass
class SenseAnswer:
    """One WSD instance: the chosen sense key and where it came from (``classifier``, or ``first
    sense`` when the lemma + POS was unseen in training; ``None`` with no key at all), and the
    classifier's probability of each candidate sense (empty when it had none)."""

    id: str
    text: str
    start: int
    end: int
    lemma: str
    pos: str
    key: str | None
    source: str | None
    candidates: dict[str, float]


@dataclass
class DisambiguatedSentence(PredictedSentence):
    """WSD: the sentence's instances and their senses."""

    instances: list[SenseAnswer]


def _plain(value):
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, Token):
        return {"text": value.text, "start": value.start, "end": value.end}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    names = _FIELDS.get(type(value))
    if names is None and is_dataclass(value):
        names = _FIELDS.setdefault(type(value), tuple(f.name for f in fields(value)))
    return {name: _plain(getattr(value, name)) for name in names} if names is not None else value


_FIELDS: dict[type, tuple[str, ...]] = {}


def sentences_of(split) -> list[TextSentence]:
    """The split's sentences with offsets: those it was read from (raw or tokenised text), else
    made from its tokens (a labelled file)."""
    sentences = getattr(split, "sentences", None)
    return sentences if sentences is not None else join_tokens(split.tokens)[1]


def probabilities(names: Iterable[str], values: Iterable[float]) -> dict[str, float]:
    """``{name: probability}`` rounded to 6 decimals (float32 carries no more)."""
    return {name: round(float(value), 6) for name, value in zip(names, values)}


def write_jsonl(path: str | Path, records: Iterable[PredictedSentence]) -> None:
    """One JSON object per line (UTF-8, non-ASCII kept), written atomically."""
    from elmo_core.io import atomic_write_text

    atomic_write_text(Path(path), "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in records))


__all__ = [
    "ClassifiedSentence",
    "DisambiguatedSentence",
    "Entity",
    "EntitySentence",
    "PredictedSentence",
    "SenseAnswer",
    "TaggedSentence",
    "Token",
    "probabilities",
    "sentences_of",
    "write_jsonl",
]
