"""Pretrain from a bilm-tf options JSON: map what applies onto :class:`~elmo_core.pretrain.PretrainConfig`,
say what is ignored and why, and refuse what cannot be honoured.

bilm-tf's ``train_elmo.py`` writes one ``options.json`` holding the architecture (``lstm``,
``char_cnn``) and its training options; the official models' options files hold the architecture
only. Either is accepted (``elmo-tasks pretrain --bilm-tf-options FILE``):

=========================================  ===================================================================
bilm-tf key                                 here
=========================================  ===================================================================
``lstm.*``, ``char_cnn.*``                  ``model`` (``n_characters`` 261, bilm-tf's training value, is exported
                                            as 262, the value bilm-tf and AllenNLP load a trained model with)
``n_epochs`` x ``n_train_tokens``           ``max_tokens_seen`` (both needed)
``batch_size`` x ``unroll_steps``           ``batch_tokens``: the same tokens per step (both needed)
``all_clip_norm_val``                       ``clip_norm``
``dropout``                                 ``dropout`` (on the top layer's output before the softmax; bilm-tf
                                            drops each LSTM layer's input)
``n_negative_samples_batch``                ``softmax: sampled``, ``negative_samples`` (unless ``sample_softmax:
                                            false``, which is ``softmax: adaptive``, exact like bilm-tf's full one)
``n_tokens_vocab``                          checked against ``--vocab``; without one, ``max_vocab``
``unroll_steps`` (truncated BPTT)           ignored: whole sentences from a zero state
``bidirectional: true``                     ignored (always); ``false`` is refused
``share_embedding_softmax: false``          ignored (char-CNN input: nothing to share); ``true`` is refused
=========================================  ===================================================================

A key bilm-tf never had is an error naming it (with the closest bilm-tf key); problems are reported
all at once as one :class:`BilmTfOptionsError` naming the file. ``--set`` overrides apply to the
mapped config afterwards, with our key names.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

from data.config import ConfigError, build, get_dotted, merge_overrides, positive, unit_interval
from data.errors import DataFormatError

from .errors import ElmoFileError
from .options import options_from_dict
from .pretrain import (
    PretrainConfig,
    _at_least,
    _CharCnnSection,
    _LstmSection,
    pretrain_config_from_tree,
)
from .vocab import SPECIAL_TOKENS, Vocabulary

__all__ = ["BilmTfMapping", "BilmTfOptionsError", "load_bilm_tf_config", "map_bilm_tf_options"]


class BilmTfOptionsError(ConfigError):
    """A bilm-tf options file has unknown, ill-typed or contradictory fields; ``problems`` names
    each as ``key: what is wrong``, the message shows them one a line after the file."""

    def __init__(self, source: str | Path, problems: list[str]):
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            shown = self.problems[:12]
            more = f"\n  ... and {len(self.problems) - 12} more" if len(self.problems) > 12 else ""
            message = f"{len(self.problems)} problems in the bilm-tf options:\n  " + "\n  ".join(shown) + more
        DataFormatError.__init__(self, source, None, message)


# -- what a bilm-tf options file may hold (bilm-tf's training.py and model.py read these) -----------
@dataclass
class _BilmTfLstm(_LstmSection):
    n_layers: int = field(default=1, metadata=positive)  # bilm-tf: options['lstm'].get('n_layers', 1)


@dataclass
class _BilmTfOptions:
    lstm: _BilmTfLstm = field(default_factory=_BilmTfLstm)
    char_cnn: _CharCnnSection = field(default_factory=_CharCnnSection)
    bidirectional: bool = True
    dropout: float = field(default=0.1, metadata=unit_interval)
    all_clip_norm_val: float = field(default=10.0, metadata=positive)
    n_epochs: int = field(default=1, metadata=positive)
    n_train_tokens: int = field(default=1, metadata=positive)
    batch_size: int = field(default=1, metadata=positive)
    unroll_steps: int = field(default=1, metadata=positive)
    n_tokens_vocab: int = field(default=len(SPECIAL_TOKENS) + 1, metadata=_at_least(len(SPECIAL_TOKENS) + 1))
    n_negative_samples_batch: int = field(default=1, metadata=positive)
    sample_softmax: bool = True
    share_embedding_softmax: bool = False


_ABSENT = object()

# bilm-tf fails without these (options[...] rather than options.get(...)).
_REQUIRED = (
    "lstm.dim",
    "lstm.projection_dim",
    "char_cnn.embedding.dim",
    "char_cnn.filters",
    "char_cnn.n_characters",
    "char_cnn.max_characters_per_token",
    "char_cnn.activation",
)


@dataclass
class BilmTfMapping:
    """What became of each key of a bilm-tf options file.

    ``applied``: bilm-tf key -> what it set here (``"max_tokens_seen = 10 x 768648884 = ..."``);
    ``checked``: keys compared with another input and found consistent; ``ignored``: key -> why;
    ``defaults``: training keys absent from the file, with the value of ours that stands instead.
    """

    source: str
    applied: dict[str, str] = field(default_factory=dict)
    checked: dict[str, str] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    overridden: dict[str, str] = field(default_factory=dict)  # --set key -> what it replaced

    def report(self) -> str:
        """The mapping as lines for a terminal."""
        rows = []
        for label, part in (("applied", self.applied), ("checked", self.checked), ("ignored", self.ignored)):
            grouped: dict[str, list[str]] = {}
            for key, text in part.items():  # keys mapped together (n_epochs x n_train_tokens) share a line
                grouped.setdefault(text, []).append(key)
            rows += [(label, " x ".join(keys), text) for text, keys in grouped.items()]
        width = max((len(keys) for _, keys, _ in rows), default=10)
        lines = [f"bilm-tf options {self.source}:"]
        lines += [f"  {label:8} {keys:<{width}}  {text}" for label, keys, text in rows]
        lines += [f"  --set    {key} replaces {text}" for key, text in self.overridden.items()]
        if self.defaults:
            lines.append(
                "  not in the file (our values stand): " + "; ".join(f"{k} -> {v}" for k, v in self.defaults.items())
            )
        lines.append(
            "  not from bilm-tf: the optimiser is Adam (lr, --set lr=...) where bilm-tf hard-codes Adagrad 0.2; "
            "threads, eval_every, checkpoint_every, max_sentence_tokens are ours (--set)"
        )
        return "\n".join(lines)


def _present(tree: dict, dotted: str) -> bool:
    node = tree
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def read_options_json(path: str | Path) -> dict:
    """The JSON object in ``path``; a missing file, bad JSON (with its line) or a non-object is a
    :class:`~data.errors.DataFormatError` naming the file."""
    path = Path(path)
    if path.is_dir():
        raise DataFormatError(path, None, "is a directory (expected a bilm-tf options JSON file)")
    if not path.is_file():
        raise DataFormatError(path, None, "bilm-tf options file not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DataFormatError(path, line, f"not UTF-8 text (byte 0x{err.object[err.start]:02x})") from None
    try:
        tree = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataFormatError(path, err.lineno, f"not valid JSON: {err.msg} (column {err.colno})") from None
    if not isinstance(tree, dict):
        raise DataFormatError(path, None, f"a bilm-tf options file is a JSON object, found a {type(tree).__name__}")
    return tree


def map_bilm_tf_options(
    tree: dict, source: str | Path = "<bilm-tf options>", vocab: Vocabulary | None = None, vocab_path=None
) -> tuple[dict, BilmTfMapping]:
    """The pretraining config tree (our keys) for a parsed bilm-tf options object, and the mapping.
    ``vocab`` (read from ``vocab_path``) is what ``n_tokens_vocab`` is checked against. Raises
    :class:`BilmTfOptionsError` listing every problem."""
    source = str(source)
    mapping = BilmTfMapping(source)
    problems: list[str] = []
    if isinstance(tree.get("char_cnn"), dict) and tree["char_cnn"].get("n_highway", 0) is None:
        tree = {**tree, "char_cnn": {k: v for k, v in tree["char_cnn"].items() if k != "n_highway"}}  # bilm-tf: none
    ours = set(PretrainConfig.__dataclass_fields__) - {"model"}
    known = set(_BilmTfOptions.__dataclass_fields__)
    rest = {}
    for key, value in tree.items():
        if key not in known and key in ours:
            problems.append(
                f"{key}: not a bilm-tf option (it is one of elmo-tasks' pretraining keys: pass it as --set {key}=...)"
            )
        else:
            rest[key] = value
    try:
        options = build(_BilmTfOptions, rest, source)
    except ConfigError as err:
        problems += err.problems
        options = None
    for key in ("lstm", "char_cnn"):
        if key not in tree:
            why = (
                "elmo-tasks trains the character-input biLM; bilm-tf's word-input models are not supported"
                if key == "char_cnn"
                else "the LSTM section (dim, projection_dim, n_layers, ...)"
            )
            problems.append(f"{key}: missing ({why})")
    problems += [
        f"{key}: missing (bilm-tf requires it)"
        for key in _REQUIRED
        if key.split(".")[0] in tree and isinstance(tree[key.split(".")[0]], dict) and not _present(tree, key)
    ]
    if tree.get("bidirectional") is False:
        problems.append(
            "bidirectional: false is not supported: elmo-tasks pretrains both directions (ELMo needs both); "
            "remove the key or set it to true"
        )
    if tree.get("share_embedding_softmax") is True:
        problems.append(
            "share_embedding_softmax: true needs word inputs (bilm-tf refuses it with char_cnn as well); "
            "remove the key or set it to false"
        )
    vocab_name = vocab_path if vocab_path is not None else "--vocab"
    if vocab is not None and "n_tokens_vocab" in tree and options is not None:
        if options.n_tokens_vocab != len(vocab):
            problems.append(
                f"n_tokens_vocab: {options.n_tokens_vocab}, but the vocabulary {vocab_name} has {len(vocab)} tokens "
                "(bilm-tf sets it to the vocabulary's size, special tokens included); fix one of them"
            )
    if problems or options is None:
        raise BilmTfOptionsError(source, problems)

    # -- the model ---------------------------------------------------------------------------------
    model = {"lstm": copy.deepcopy(tree["lstm"]), "char_cnn": copy.deepcopy(tree["char_cnn"])}
    notes = []
    model["lstm"].setdefault("n_layers", 1)
    if "n_layers" not in tree["lstm"]:
        notes.append("lstm.n_layers absent: 1, bilm-tf's default")
    if "n_highway" not in tree["char_cnn"]:
        model["char_cnn"]["n_highway"] = 0
        notes.append("char_cnn.n_highway absent: 0 (no highway layer), as in bilm-tf")
    if model["char_cnn"]["n_characters"] == 261:
        model["char_cnn"]["n_characters"] = 262
        notes.append("n_characters 261 (bilm-tf's training value) is exported as 262, the value it is loaded with")
    try:
        model_options = options_from_dict(model, source)
    except (ElmoFileError, TypeError, ValueError) as err:  # the loader's own checks, worded with the file's keys
        raise BilmTfOptionsError(source, [str(err).removeprefix(f"{source}: ")]) from None
    lstm, cnn = model_options.lstm, model_options.char_cnn
    mapping.applied["lstm"] = (
        f"model.lstm: dim {lstm.dim}, projection_dim {lstm.projection_dim}, n_layers {lstm.n_layers}, "
        f"cell_clip {lstm.cell_clip}, proj_clip {lstm.proj_clip}, use_skip_connections {lstm.use_skip_connections}"
    )
    mapping.applied["char_cnn"] = (
        f"model.char_cnn: {len(cnn.filters)} filters ({cnn.n_filters} channels), embedding {cnn.char_dim}, "
        f"n_highway {cnn.n_highway}, max_characters_per_token {cnn.max_chars}, {cnn.activation}"
        + "".join(f"; {note}" for note in notes)
    )
    config: dict = {"model": model}

    # -- training options ------------------------------------------------------------------------------
    defaults = PretrainConfig()
    has = set(tree)
    if {"n_epochs", "n_train_tokens"} <= has:
        budget = options.n_epochs * options.n_train_tokens
        config["max_tokens_seen"] = budget
        text = f"max_tokens_seen = {options.n_epochs} x {options.n_train_tokens:,} = {budget:,}"
        mapping.applied["n_epochs"] = mapping.applied["n_train_tokens"] = text
    else:
        for key in {"n_epochs", "n_train_tokens"} & has:
            other = ({"n_epochs", "n_train_tokens"} - {key}).pop()
            mapping.ignored[key] = f"the budget needs both n_epochs and n_train_tokens ({other} is absent)"
        if not {"n_epochs", "n_train_tokens"} & has:
            mapping.defaults["n_epochs x n_train_tokens"] = f"max_tokens_seen {defaults.max_tokens_seen:,}"
    if {"batch_size", "unroll_steps"} <= has:
        tokens = options.batch_size * options.unroll_steps
        config["batch_tokens"] = tokens
        text = (
            f"batch_tokens = {options.batch_size} x {options.unroll_steps} = {tokens} tokens per step (bilm-tf's "
            "batch_size is per GPU: --set batch_tokens=... times its n_gpus for the same global batch)"
        )
        mapping.applied["batch_size"] = mapping.applied["unroll_steps"] = text
    elif "batch_size" in has:
        mapping.ignored["batch_size"] = "the batch's token budget needs both batch_size and unroll_steps"
    else:
        mapping.defaults["batch_size x unroll_steps"] = f"batch_tokens {defaults.batch_tokens}"
    if "unroll_steps" in has:
        mapping.ignored["unroll_steps"] = (
            f"as truncated BPTT: we train on whole sentences (<S> w1 .. wn </S>, up to max_sentence_tokens, "
            f"default {defaults.max_sentence_tokens}) from a zero LSTM state, as our backbone infers, not "
            f"{options.unroll_steps}-token windows with carried state"
        )
    if "all_clip_norm_val" in has:
        config["clip_norm"] = options.all_clip_norm_val
        mapping.applied["all_clip_norm_val"] = f"clip_norm = {options.all_clip_norm_val} (global gradient norm)"
    else:
        mapping.defaults["all_clip_norm_val"] = f"clip_norm {defaults.clip_norm}"
    if "dropout" in has:
        config["dropout"] = options.dropout
        mapping.applied["dropout"] = (
            f"dropout = {options.dropout} (on the top LSTM layer's output before the softmax; bilm-tf drops "
            "each LSTM layer's input)"
        )
    else:
        mapping.defaults["dropout"] = f"dropout {defaults.dropout}"
    sampled = options.sample_softmax and "n_negative_samples_batch" in has
    if "sample_softmax" in has and not options.sample_softmax:
        config["softmax"] = "adaptive"
        mapping.applied["sample_softmax"] = (
            "softmax = adaptive (false: bilm-tf's full softmax; the adaptive softmax is exact as well, and cheaper)"
        )
        if "n_negative_samples_batch" in has:
            mapping.ignored["n_negative_samples_batch"] = "sample_softmax is false"
    elif sampled:
        config["softmax"] = "sampled"
        config["negative_samples"] = options.n_negative_samples_batch
        mapping.applied["n_negative_samples_batch"] = (
            f"softmax = sampled, negative_samples = {options.n_negative_samples_batch} (bilm-tf's sampled softmax; "
            "--set softmax=adaptive for the exact adaptive softmax, see docs/benchmarks.md)"
        )
        if "sample_softmax" in has:
            mapping.applied["sample_softmax"] = "softmax = sampled"
    else:
        if "sample_softmax" in has:
            mapping.ignored["sample_softmax"] = "true, but without n_negative_samples_batch there is nothing to sample"
        mapping.defaults["n_negative_samples_batch"] = f"softmax {defaults.softmax}"
    if "n_tokens_vocab" in has:
        if vocab is not None:
            mapping.checked["n_tokens_vocab"] = f"{options.n_tokens_vocab} = the tokens of {vocab_name}"
        else:
            config["max_vocab"] = options.n_tokens_vocab
            mapping.applied["n_tokens_vocab"] = (
                f"max_vocab = {options.n_tokens_vocab} (no --vocab: the vocabulary is counted from the corpus, "
                f"min_count {defaults.min_count})"
            )
    if "bidirectional" in has:
        mapping.ignored["bidirectional"] = "true: elmo-tasks always pretrains both directions"
    if "share_embedding_softmax" in has:
        mapping.ignored["share_embedding_softmax"] = "false: with char_cnn inputs there is no word embedding to share"
    if vocab_path is not None:
        config["vocab"] = str(vocab_path)
    return config, mapping


def load_bilm_tf_config(
    options_path: str | Path, vocab_path: str | Path | None = None, overrides: dict | None = None
) -> tuple[PretrainConfig, BilmTfMapping]:
    """The typed pretraining config for a bilm-tf options file (and vocabulary file), with dotted
    ``overrides`` (our key names) applied after the mapping, and the mapping. Every problem of the
    options file is reported at once (:class:`BilmTfOptionsError`); a bad vocabulary is an
    :class:`~elmo_core.errors.ElmoFileError` naming ``FILE:LINE``."""
    tree = read_options_json(options_path)
    vocab = Vocabulary.load(vocab_path) if vocab_path is not None else None
    config_tree, mapping = map_bilm_tf_options(tree, options_path, vocab, vocab_path)
    for key in overrides or {}:
        mapped = get_dotted(config_tree, key, _ABSENT)
        if mapped is not _ABSENT:
            mapping.overridden[key] = f"the mapped {mapped!r}" if not isinstance(mapped, dict) else "the mapped section"
    source = f"{options_path} (with --set {', '.join(overrides)})" if overrides else str(options_path)
    config = pretrain_config_from_tree(merge_overrides(config_tree, overrides), source)
    return config, mapping
