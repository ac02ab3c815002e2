"""Reader for the unified WSD evaluation framework of Raganato et al. (2017).

A data file is ``<corpus><text id><sentence id>`` holding ``<wf lemma pos>word</wf>`` and
``<instance id lemma pos>word</instance>`` tokens (universal POS tags); the gold key file has
one ``instance_id key [key ...]`` line per instance, with WordNet 3.0 sense keys.

The XML is read with expat, a streaming parser, because SemCor is 38 MB; expat also reports
the line of every element, so structural problems point at ``FILE:LINE``. Surface forms are
kept verbatim: SemCor's multiword tokens stay underscore-joined (``Fulton_County_Grand_Jury``)
while the evaluation sets write some with spaces (``Air Force``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from xml.parsers import expat

from data.errors import DataFormatError
from data.text import check_readable_file, read_lines

TOKEN_TAGS = ("wf", "instance")
CONTAINER_TAGS = ("corpus", "text")


class WsdInstance(NamedTuple):
    """A token to disambiguate: its index in the sentence and what the data file says about it."""

    position: int
    instance_id: str
    lemma: str
    pos: str


@dataclass
class WsdSentence:
    id: str
    tokens: list[str] = field(default_factory=list)
    lemmas: list[str] = field(default_factory=list)
    pos: list[str] = field(default_factory=list)
    instances: list[WsdInstance] = field(default_factory=list)
    text_id: str = ""


@dataclass
class WsdCorpus:
    """Sentences of one data file plus its gold keys (empty when no key file was given)."""

    name: str
    xml_path: Path
    key_path: Path | None
    sentences: list[WsdSentence]
    gold: dict[str, list[str]]
    # 1-based line of each instance in the key file, so later checks can point at it.
    gold_lines: dict[str, int] = field(default_factory=dict)

    def instances(self) -> Iterator[WsdInstance]:
        for sentence in self.sentences:
            yield from sentence.instances

    def instances_by_id(self) -> dict[str, WsdInstance]:
        return {instance.instance_id: instance for instance in self.instances()}

    def dataset_of(self, instance_id: str) -> str:
        """The evaluation set an instance comes from.

        In ``ALL`` ids carry it as a prefix (``senseval2.d000.s000.t000``); in a single set the
        id is ``d000.s000.t000`` and the set is the corpus itself.
        """
        parts = instance_id.split(".")
        return parts[0] if len(parts) > 3 else self.name


def read_wsd(xml_path: str | Path, key_path: str | Path | None = None) -> WsdCorpus:
    """Read a framework data file and, optionally, its gold keys (checked against each other)."""
    xml_path = Path(xml_path)
    sentences, instance_lines = _SentenceCollector(xml_path).parse()
    gold: dict[str, list[str]] = {}
    gold_lines: dict[str, int] = {}
    if key_path is not None:
        key_path = Path(key_path)
        gold, gold_lines = read_gold_keys(key_path)
        _check_keys_match_instances(gold, gold_lines, instance_lines, xml_path, key_path)
    name = xml_path.name.removesuffix(".data.xml")
    return WsdCorpus(name, xml_path, key_path, sentences, gold, gold_lines)


def read_gold_keys(key_path: str | Path) -> tuple[dict[str, list[str]], dict[str, int]]:
    """``{instance_id: [keys]}`` and ``{instance_id: line}`` from a key file."""
    gold: dict[str, list[str]] = {}
    lines: dict[str, int] = {}
    for number, text in read_lines(key_path):
        fields = text.split()
        if len(fields) < 2:
            raise DataFormatError(key_path, number, f"expected 'instance_id key [key ...]', got {text.rstrip()!r}")
        instance_id, keys = fields[0], fields[1:]
        if instance_id in gold:
            raise DataFormatError(
                key_path, number, f"instance {instance_id} already has keys on line {lines[instance_id]}"
            )
        gold[instance_id] = keys
        lines[instance_id] = number
    return gold, lines


def _check_keys_match_instances(
    gold: dict[str, list[str]],
    gold_lines: dict[str, int],
    instance_lines: dict[str, int],
    xml_path: Path,
    key_path: Path,
) -> None:
    for instance_id, line in gold_lines.items():
        if instance_id not in instance_lines:
            raise DataFormatError(key_path, line, f"gold key for unknown instance {instance_id} (not in {xml_path})")
    for instance_id, line in instance_lines.items():
        if instance_id not in gold:
            raise DataFormatError(
                key_path, None, f"instance {instance_id} ({xml_path}:{line}) has no gold key in this file"
            )


class _SentenceCollector:
    """expat callbacks that build sentences; every error names the line expat is on."""

    def __init__(self, path: Path):
        self.path = path
        self.parser = expat.ParserCreate(encoding=None)
        self.parser.buffer_text = True  # one text callback per token instead of one per chunk
        self.parser.StartElementHandler = self.start
        self.parser.EndElementHandler = self.end
        self.parser.CharacterDataHandler = self.text
        self.sentences: list[WsdSentence] = []
        self.instance_lines: dict[str, int] = {}
        self.text_id = ""
        self.sentence: WsdSentence | None = None
        self.token_attributes: dict[str, str] | None = None
        self.token_text: list[str] = []

    def parse(self) -> tuple[list[WsdSentence], dict[str, int]]:
        check_readable_file(self.path)  # a missing file is a DataFormatError, as in every reader
        with open(self.path, "rb") as stream:
            try:
                self.parser.ParseFile(stream)
            except expat.ExpatError as error:
                problem = expat.ErrorString(error.code)
                raise DataFormatError(
                    self.path, error.lineno, f"column {error.offset + 1}: malformed XML: {problem}"
                ) from None
        return self.sentences, self.instance_lines

    def error(self, problem: str) -> DataFormatError:
        return DataFormatError(self.path, self.parser.CurrentLineNumber, problem)

    def require(self, tag: str, attributes: dict[str, str], name: str) -> str:
        value = attributes.get(name)
        if not value:
            raise self.error(f"<{tag}> without a '{name}' attribute")
        return value

    def start(self, tag: str, attributes: dict[str, str]) -> None:
        if self.token_attributes is not None:
            raise self.error(f"<{tag}> inside a token (tokens hold only text)")
        if tag == "sentence":
            self.start_sentence(attributes)
        elif tag in TOKEN_TAGS:
            if self.sentence is None:
                raise self.error(f"<{tag}> outside a <sentence>")
            self.require(tag, attributes, "lemma")
            self.require(tag, attributes, "pos")
            self.token_attributes = attributes
            self.token_text = []
        elif tag == "text":
            self.text_id = attributes.get("id", "")
        elif tag not in CONTAINER_TAGS:
            raise self.error(f"unexpected element <{tag}> (expected corpus, text, sentence, wf or instance)")

    def start_sentence(self, attributes: dict[str, str]) -> None:
        if self.sentence is not None:
            raise self.error("<sentence> inside another <sentence>")
        self.sentence = WsdSentence(id=self.require("sentence", attributes, "id"), text_id=self.text_id)

    def text(self, data: str) -> None:
        if self.token_attributes is not None:
            self.token_text.append(data)

    def end(self, tag: str) -> None:
        if tag == "sentence":
            self.sentences.append(self.sentence)
            self.sentence = None
        elif tag in TOKEN_TAGS:
            self.add_token(tag)

    def add_token(self, tag: str) -> None:
        sentence, attributes = self.sentence, self.token_attributes
        self.token_attributes = None
        surface = "".join(self.token_text).strip()
        if not surface:
            raise self.error(f"<{tag}> with no word")
        if tag == "instance":
            self.add_instance(sentence, attributes)
        sentence.tokens.append(surface)
        sentence.lemmas.append(attributes["lemma"])
        sentence.pos.append(attributes["pos"])

    def add_instance(self, sentence: WsdSentence, attributes: dict[str, str]) -> None:
        instance_id = self.require("instance", attributes, "id")
        if instance_id in self.instance_lines:
            raise self.error(f"instance id {instance_id} already used on line {self.instance_lines[instance_id]}")
        self.instance_lines[instance_id] = self.parser.CurrentLineNumber
        position = len(sentence.tokens)
        sentence.instances.append(WsdInstance(position, instance_id, attributes["lemma"], attributes["pos"]))
