"""A TF-Hub-style entry point: ``load(...)`` returns a callable with the ELMo module's two signatures
and its output dict, so code written for ``hub.Module("https://tfhub.dev/google/elmo/3")`` ports by
changing the loading line.

    from elmo_core import hub

    elmo = hub.load("default")  # a model name, a folder with options.json + weights.hdf5, or an official URL
    out = elmo(["the cat is on the mat", "dogs are in the fog"], signature="default", as_dict=True)
    out["elmo"]      # (batch, max_len, 2 * proj): the weighted sum of the layers
    out["default"]   # (batch, 2 * proj): masked mean of "elmo" over each sentence's tokens

Outputs (as in TF-Hub's ELMo v2/v3, where proj = 512 and 2 * proj = 1024):

* ``word_emb`` ``(batch, max_len, proj)``: the char-CNN token layer (context-free);
* ``lstm_outputs1``, ``lstm_outputs2`` ``(batch, max_len, 2 * proj)``: the biLSTM layers;
* ``elmo`` ``(batch, max_len, 2 * proj)``: ``gamma * sum_j softmax(w)_j * layer_j`` over the three
  layers (the token layer doubled to ``[tok, tok]``), ``w`` initialised to zeros (equal weights 1/3)
  and ``gamma`` to 1, as TF-Hub initialises them;
* ``default`` ``(batch, 2 * proj)``: the mean of ``elmo`` over each sentence's real tokens;
* ``sequence_len`` ``(batch,)``: the number of tokens of each sentence.

Every output is a ``torch.Tensor``; positions past a sentence's end are zero. With
``trainable=False`` (the default) they carry no autograd history, so ``.numpy()`` works directly;
with ``trainable=True`` the mix weights ``w`` and ``gamma`` are parameters of the returned module
and ``elmo`` / ``default`` carry gradients to them (TF-Hub's ``trainable=True``; the biLM itself
stays frozen).

Differences from TF-Hub, on purpose: the result of a sentence never depends on what was run before
it (TF-Hub's module keeps LSTM state between calls; ``stateful=True`` carries it as bilm-tf does),
and inputs TF-Hub would silently accept but embed as garbage (an empty sentence, an empty token
inside ``sequence_len``) raise :class:`BackboneUsageError`.

Signatures:

* ``"default"``: a list of untokenised sentences, split on single spaces exactly as TF-Hub does
  (``tf.string_split``: runs of spaces collapse; tabs and newlines are *not* separators);
* ``"tokens"``: ``{"tokens": list of token lists padded with "", "sequence_len": lengths}``;
  ``max_len`` is the padded width of ``tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from torch import nn

from .allennlp_compat import fetch_official_for_url, is_url
from .bilm import ElmoBiLm
from .char_ids import batch_to_ids
from .errors import BackboneUsageError, ElmoFileError, ModelNotAvailableError
from .loading import load_bilm_from_files
from .models import available_names, is_model_name, resolve
from .scalar_mix import ScalarMix

SIGNATURES = ("default", "tokens")


def model_files(handle: str | Path) -> tuple[Path, Path]:
    """``(options, weights)`` for a model name, a folder or an official AllenNLP URL."""
    if isinstance(handle, str) and is_url(handle):
        host = urlparse(handle).netloc.lower()
        if host.endswith(("tfhub.dev", "kaggle.com")) or host.startswith("storage.googleapis"):
            raise ModelNotAvailableError(
                f"{handle}: TF-Hub modules are TensorFlow SavedModels, which this package does not read. "
                f"The TF-Hub ELMo was trained on the 1 Billion Word Benchmark, like the official bilm-tf "
                f"'original' model (same architecture): use hub.load('original') (downloaded once), or a "
                f"folder holding options.json and weights.hdf5."
            )
        options, weights, _ = fetch_official_for_url(handle)
        return options, weights
    if not isinstance(handle, (str, Path)):
        raise BackboneUsageError(f"hub.load takes a model name, a folder or a URL, got {type(handle).__name__}")
    path = Path(handle)
    if path.is_dir():
        return _files_in_folder(path)
    if path.exists():
        raise BackboneUsageError(f"{path}: hub.load takes the folder that holds options.json and weights.hdf5")
    if isinstance(handle, str) and is_model_name(handle):
        return resolve(handle)
    raise ModelNotAvailableError(
        f"{handle!r} is neither a model name ({', '.join(available_names())}), an existing folder, nor an "
        f"official ELMo URL"
    )


def _files_in_folder(folder: Path) -> tuple[Path, Path]:
    options, weights = folder / "options.json", folder / "weights.hdf5"
    if options.is_file() and weights.is_file():
        return options, weights
    # The official file names: elmo_<stem>_options.json and elmo_<stem>_weights.hdf5.
    found_options = sorted(folder.glob("*options.json"))
    found_weights = sorted(folder.glob("*weights.hdf5"))
    if len(found_options) == 1 and len(found_weights) == 1:
        return found_options[0], found_weights[0]
    raise ElmoFileError(
        f"{folder}: expected options.json and weights.hdf5 (or one *_options.json and one *_weights.hdf5); "
        f"found {', '.join(sorted(p.name for p in folder.iterdir())) or 'nothing'}"
    )


def load(handle: str | Path, trainable: bool = False, stateful: bool = False) -> HubModule:
    """A TF-Hub-style ELMo module (see the module docstring) on a named model (``default`` ships
    with the package), a folder with ``options.json`` + ``weights.hdf5``, or an official URL."""
    options, weights = model_files(handle)
    return HubModule(load_bilm_from_files(options, weights, stateful=stateful), trainable=trainable)


class HubModule(nn.Module):
    """Callable as ``module(inputs, signature="default", as_dict=False)``; see :mod:`elmo_core.hub`.

    Args:
        bilm: the backbone (frozen, always in eval mode).
        trainable: make the ``elmo`` mix's weights and gamma trainable (TF-Hub's ``trainable``).
    """

    def __init__(self, bilm: ElmoBiLm, trainable: bool = False):
        super().__init__()
        self.bilm = bilm.eval()
        for param in self.bilm.parameters():
            param.requires_grad_(False)
        self.trainable = trainable
        self.mix = ScalarMix(bilm.num_layers, trainable=trainable)

    def train(self, mode: bool = True):
        super().train(mode)
        self.bilm.eval()
        return self

    def forward(
        self, inputs, signature: str = "default", as_dict: bool = False
    ) -> dict[str, torch.Tensor] | torch.Tensor:
        """``inputs``: a list of sentences (``signature="default"``) or ``{"tokens", "sequence_len"}``
        (``signature="tokens"``). Returns the output dict, or only ``default`` (batch, 2 * proj)
        when ``as_dict`` is False (TF-Hub's behaviour)."""
        if signature == "default":
            sentences = split_sentences(inputs)
            width = max(len(s) for s in sentences)
        elif signature == "tokens":
            sentences, width = tokens_input(inputs)
        else:
            raise BackboneUsageError(
                f"unknown signature {signature!r}: ELMo has 'default' (a list of sentences) and 'tokens' "
                f"({{'tokens': padded token lists, 'sequence_len': lengths}})"
            )
        if self.trainable:
            outputs = self._outputs(sentences, width)
        else:
            with torch.no_grad():
                outputs = self._outputs(sentences, width)
        return outputs if as_dict else outputs["default"]

    def _outputs(self, sentences: list[list[str]], width: int) -> dict[str, torch.Tensor]:
        device = next(self.bilm.parameters()).device
        char_ids = batch_to_ids(sentences, self.bilm.options.char_cnn.max_chars).to(device)
        with torch.no_grad():
            layers, mask = self.bilm(char_ids)
        if layers.shape[2] < width:  # "tokens": the output keeps the padded width of the input
            layers = nn.functional.pad(layers, (0, 0, 0, width - layers.shape[2]))
            mask = nn.functional.pad(mask, (0, width - mask.shape[1]))
        proj = self.bilm.options.lstm.projection_dim
        lengths = mask.sum(dim=1)
        elmo = self.mix(layers, mask) * mask.unsqueeze(-1).to(layers.dtype)
        outputs = {"word_emb": layers[0, :, :, :proj]}
        outputs.update({f"lstm_outputs{k}": layers[k] for k in range(1, layers.shape[0])})
        outputs["elmo"] = elmo
        outputs["default"] = elmo.sum(dim=1) / lengths.unsqueeze(-1).to(elmo.dtype)
        outputs["sequence_len"] = lengths
        return outputs


def split_sentences(inputs) -> list[list[str]]:
    """The ``default`` signature's input: sentences split on spaces like ``tf.string_split``."""
    if isinstance(inputs, np.ndarray):
        inputs = inputs.tolist()
    if isinstance(inputs, (str, bytes)):
        raise BackboneUsageError(
            'signature "default" takes a list of sentences; wrap a single sentence in a list: [sentence]'
        )
    if isinstance(inputs, dict):
        raise BackboneUsageError('a dict of tokens and lengths goes with signature="tokens"')
    if not isinstance(inputs, Sequence) or len(inputs) == 0:
        raise BackboneUsageError(
            f'signature "default" takes a non-empty list of sentences (str), got {_describe(inputs)}'
        )
    sentences = []
    for i, sentence in enumerate(inputs):
        if isinstance(sentence, bytes):
            sentence = sentence.decode("utf-8")
        if not isinstance(sentence, str):
            raise BackboneUsageError(f"sentence {i} is {_describe(sentence)}, expected a str")
        tokens = [t for t in sentence.split(" ") if t]
        if not tokens:
            raise BackboneUsageError(f"sentence {i} ({sentence!r}) has no tokens: ELMo needs at least one")
        sentences.append(tokens)
    return sentences


def tokens_input(inputs) -> tuple[list[list[str]], int]:
    """The ``tokens`` signature's input -> (each sentence's real tokens, padded width)."""
    if not isinstance(inputs, dict) or set(inputs) != {"tokens", "sequence_len"}:
        got = sorted(inputs) if isinstance(inputs, dict) else _describe(inputs)
        raise BackboneUsageError(
            f'signature "tokens" takes {{"tokens": padded token lists, "sequence_len": lengths}}, got {got}'
        )
    tokens, lengths = inputs["tokens"], inputs["sequence_len"]
    if isinstance(tokens, np.ndarray):
        tokens = tokens.tolist()
    if isinstance(lengths, (np.ndarray, torch.Tensor)):
        lengths = lengths.tolist()
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence) or len(tokens) == 0:
        raise BackboneUsageError(f'"tokens" must be a non-empty list of token lists, got {_describe(tokens)}')
    if isinstance(lengths, (str, bytes)) or not isinstance(lengths, Sequence) or len(lengths) != len(tokens):
        raise BackboneUsageError(
            f'"sequence_len" must give one length per sentence ({len(tokens)}), got {_describe(lengths)}'
        )
    sentences, width = [], 0
    for i, (row, length) in enumerate(zip(tokens, lengths)):
        if isinstance(row, np.ndarray):
            row = row.tolist()
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence):
            raise BackboneUsageError(f'"tokens"[{i}] is {_describe(row)}, expected a list of str')
        row = [t.decode("utf-8") if isinstance(t, bytes) else t for t in row]
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or not 1 <= length <= len(row):
            raise BackboneUsageError(
                f'"sequence_len"[{i}] is {length!r}: expected an int from 1 to the row\'s width {len(row)}'
            )
        for j, token in enumerate(row):
            if not isinstance(token, str):
                raise BackboneUsageError(f'"tokens"[{i}][{j}] is {_describe(token)}, expected a str')
            if j < length and not token:
                raise BackboneUsageError(
                    f'"tokens"[{i}][{j}] is an empty string inside sequence_len {length}; "" is only padding'
                )
        sentences.append(row[: int(length)])
        width = max(width, len(row))
    return sentences, width


def _describe(value) -> str:
    return f"{type(value).__name__} {value!r}" if isinstance(value, (int, float, str)) else type(value).__name__
