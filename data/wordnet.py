"""WordNet 3.0 sense inventory, read from the Debian packages through nltk.

The files come from ``apt-get install -y wordnet-base wordnet-sense-index``, which put
``data.*``, ``index.*``, ``*.exc``, ``cntlist.rev`` and ``index.sense`` under
``/usr/share/wordnet``. They are read with nltk's ``WordNetCorpusReader``; nothing here
parses the WordNet database files itself.

Two gaps between Debian's layout and what nltk's reader expects are bridged by a small
subclass (``_DebianWordNetReader``) instead of copying or patching files:

* Debian ships no ``lexnames`` file (it exists only as the man page lexnames(5WN)), and nltk
  reads it when the reader is built. The list is fixed for WordNet 3.0, so it is generated in
  memory from ``_LEXNAMES`` below.
* nltk >= 3.9 refuses to read outside registered data roots and resolves symlinks, so the
  "temp dir of symlinks plus a lexnames file" trick is rejected as a sandbox escape. Instead
  the Debian directory itself is registered on ``nltk.data.path``, which is nltk's documented
  way of authorising a corpus in a custom location.

Universal POS tags (the Raganato framework's NOUN / VERB / ADJ / ADV) are mapped to WordNet
parts of speech; ADJ includes satellite adjectives (ss_type 5, nltk pos ``s``).
"""

from __future__ import annotations

import functools
import io
import warnings
from pathlib import Path

from data.errors import DataError, DataUsageError

DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")
INSTALL_HINT = "apt-get install -y wordnet-base wordnet-sense-index"

# Files nltk's reader opens, minus ``lexnames`` which is generated (see module docstring).
_REQUIRED_FILES = (
    "index.sense",
    "cntlist.rev",
    "index.noun",
    "index.verb",
    "index.adj",
    "index.adv",
    "data.noun",
    "data.verb",
    "data.adj",
    "data.adv",
    "noun.exc",
    "verb.exc",
    "adj.exc",
    "adv.exc",
)

# WordNet 3.0 lexicographer files, numbered 00..44, as listed in lexnames(5WN).
_LEXNAMES = (
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
)
_SYNTACTIC_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}

# nltk's "a" lookup covers both head (ss_type 3) and satellite (ss_type 5) adjectives,
# because index.adj lists both under the same lemma.
UNIVERSAL_TO_WORDNET_POS = {"NOUN": "n", "VERB": "v", "ADJ": "a", "ADV": "r"}


class WordNetNotFoundError(DataError):
    """WordNet 3.0 is not installed where we look for it."""


def _lexnames_text() -> str:
    """The ``lexnames`` file WordNet 3.0 ships: ``NN<TAB>name<TAB>category`` per line."""
    return "".join(
        f"{number:02d}\t{name}\t{_SYNTACTIC_CATEGORY[name.split('.')[0]]}\n" for number, name in enumerate(_LEXNAMES)
    )


def _missing_files(root: Path) -> list[str]:
    return [name for name in _REQUIRED_FILES if not (root / name).is_file()]


def _authorise_nltk_root(root: Path) -> None:
    """Register ``root`` as an nltk data root, so its sandbox lets the reader open files there."""
    import nltk.data

    if str(root) not in [str(p) for p in nltk.data.path]:
        nltk.data.path.append(str(root))


def _make_reader_class():
    # Built lazily so that importing this module does not import nltk.
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class _DebianWordNetReader(WordNetCorpusReader):
        """nltk's reader, with the lexnames file served from memory (Debian lacks it)."""

        def open(self, file):  # noqa: A003 - overrides CorpusReader.open
            if file == "lexnames":
                return io.StringIO(_lexnames_text())
            return super().open(file)

        def map_wn(self, version="wordnet"):
            # nltk maps offsets of the loaded WordNet onto its own downloaded "wordnet"
            # corpus for the multilingual (OMW) functions. The Debian files are WordNet 3.0,
            # the same version, so the map is the identity; computing it would need nltk_data.
            return None

    return _DebianWordNetReader


@functools.lru_cache(maxsize=4)
def _load_reader(root: Path):
    """Build (once per process and root) nltk's reader over the Debian WordNet files."""
    missing = _missing_files(root)
    if missing:
        raise WordNetNotFoundError(
            f"WordNet 3.0 not found in {root} (missing: {', '.join(missing)}). Install it with: {INSTALL_HINT}"
        )
    _authorise_nltk_root(root)
    reader_class = _make_reader_class()
    with warnings.catch_warnings():
        # Without an OMW reader nltk warns that multilingual lookups are unavailable;
        # we only use English WordNet.
        warnings.simplefilter("ignore")
        return reader_class(str(root), None)


class WordNet:
    """WordNet 3.0 senses of a lemma, keyed the way the WSD gold files are (``long%3:00:02::``)."""

    def __init__(self, root: str | Path = DEBIAN_WORDNET_DIR):
        self.root = Path(root).resolve()
        self._reader = _load_reader(self.root)
        # Gold files repeat the same keys many times; index.sense lookups are binary searches.
        self._sense_key_cache: dict[str, bool] = {}
        self._sense_keys: frozenset[str] | None = None

    @property
    def version(self) -> str | None:
        return self._reader.get_version()

    def candidate_senses(self, lemma: str, pos: str) -> list[str]:
        """Sense keys of ``lemma`` with universal ``pos``, most frequent first (WordNet order).

        Only exact matches of the lemma count: nltk's lookup also tries morphological base
        forms (``bass`` -> ``bas``), whose senses are not senses of the given lemma.
        """
        wn_pos = _wordnet_pos(pos)
        wanted = lemma.lower()
        keys: list[str] = []
        for synset in self._reader.synsets(wanted, wn_pos):
            for wn_lemma in synset.lemmas():
                key = wn_lemma.key()
                if wn_lemma.name().lower() == wanted and key not in keys:
                    keys.append(key)
        return keys

    def first_sense(self, lemma: str, pos: str) -> str | None:
        """WordNet's first (most frequent) sense key, or None when the lemma is not in WordNet."""
        senses = self.candidate_senses(lemma, pos)
        return senses[0] if senses else None

    def is_sense_key(self, key: str) -> bool:
        """True if ``key`` is exactly a WordNet 3.0 sense key (keys are case-sensitive, lower case).

        The keys of ``index.sense`` are read once into a set (0.2 s; nltk's lookup of SemCor's
        34,000 distinct keys took 12 s and gives the same answers on every one of them)."""
        if self._sense_keys is None:
            self._sense_keys = self._read_sense_keys()
        if self._sense_keys:
            return key in self._sense_keys
        known = self._sense_key_cache.get(key)
        if known is None:
            known = self._sense_key_cache[key] = self._lookup_sense_key(key)
        return known

    def _read_sense_keys(self) -> frozenset[str]:
        """Every key of ``index.sense`` (empty when the file cannot be read: nltk's lookup then)."""
        try:
            with (self.root / "index.sense").open(encoding="utf-8") as handle:
                return frozenset(line.split(" ", 1)[0] for line in handle if line.strip())
        except (OSError, UnicodeDecodeError):
            return frozenset()

    def _lookup_sense_key(self, key: str) -> bool:
        from nltk.corpus.reader.wordnet import WordNetError

        try:
            # nltk lower-cases the key before its lookup, so compare the key it gives back.
            return self._reader.lemma_from_key(key).key() == key
        except (WordNetError, ValueError, KeyError, IndexError):
            # ValueError/IndexError: the string does not even have the lemma%a:bb:cc:... shape.
            return False


def _wordnet_pos(pos: str) -> str:
    try:
        return UNIVERSAL_TO_WORDNET_POS[pos]
    except KeyError:
        raise DataUsageError(
            f"POS {pos!r} has no WordNet senses (expected one of {sorted(UNIVERSAL_TO_WORDNET_POS)})"
        ) from None
