"""elmo_core: an exact, fast PyTorch ELMo backbone that reads the official bilm-tf files.

>>> from elmo_core import load_bilm, batch_to_ids
>>> bilm = load_bilm(options="options.json", weights="weights.hdf5")
>>> out = bilm(batch_to_ids([["The", "dog", "barked"]]))
>>> out.layers.shape   # (num_layers, batch, time, dim)

AllenNLP's API (:class:`Elmo`, same constructor and output dict) and a TF-Hub-style entry point
(:func:`elmo_core.hub.load`) sit on the same backbone.
"""

from . import hub
from .allennlp_compat import Elmo
from .bilm import BiLmOutput, ElmoBiLm
from .char_ids import batch_to_ids, word_to_char_ids
from .elmo import NamedMixElmo
from .errors import BackboneError, BackboneUsageError, ElmoFileError, ModelNotAvailableError
from .loading import load_bilm
from .options import ElmoOptions, load_options
from .scalar_mix import ScalarMix
from .weights import load_weights, save_weights

__all__ = [
    "BackboneError",
    "BackboneUsageError",
    "BiLmOutput",
    "Elmo",
    "ElmoBiLm",
    "ElmoFileError",
    "ElmoOptions",
    "ModelNotAvailableError",
    "NamedMixElmo",
    "ScalarMix",
    "batch_to_ids",
    "hub",
    "load_bilm",
    "load_options",
    "load_weights",
    "save_weights",
    "word_to_char_ids",
]
