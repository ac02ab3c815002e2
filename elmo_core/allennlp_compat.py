"""``Elmo``: AllenNLP 2.x's ``allennlp.modules.elmo.Elmo``, same constructor, same output dict, same
numbers, on this package's backbone.

Code written for AllenNLP runs unchanged but for the import line::

    from elmo_core import Elmo, batch_to_ids   # was: from allennlp.modules.elmo import Elmo, batch_to_ids

    elmo = Elmo(options_file, weight_file, 2, dropout=0)
    out = elmo(batch_to_ids([["First", "sentence", "."], ["Another", "."]]))
    out["elmo_representations"]   # 2 tensors (batch, time, 2 * projection_dim), one per ScalarMix
    out["mask"]                   # (batch, time) bool

The one deliberate difference: by default the module is **stateless** (every sentence starts from a
zero LSTM state, so its vectors do not depend on which sentences were run before it or beside it).
AllenNLP's Elmo carries each batch row's final LSTM state into the same row of the next batch;
``stateful=True`` does exactly that (measured against AllenNLP 2.10.1 by
``benchmarks/allennlp_compat_check.py``).

``options_file`` / ``weight_file`` may be local paths, the official AllenNLP URLs (fetched once
into the named-model cache of :mod:`elmo_core.models`; offline, the error names the URL and how to
pass local files), or a model name of this package (``default``, ``small``, ``medium``,
``original``, ``original-5.5b``; the weight file may then be the same name or ``None``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from .bilm import ElmoBiLm, add_sentence_boundaries
from .char_ids import boundary_char_ids, word_to_char_ids
from .errors import BackboneUsageError, ModelNotAvailableError
from .loading import load_bilm_from_files
from .models import OFFICIAL_MODELS, available_names, fetch_official, is_model_name, resolve
from .scalar_mix import ScalarMix

logger = logging.getLogger(__name__)

_KINDS = ("options", "weights")


def official_model_for_url(url: str) -> tuple[str, str | None]:
    """``(model name, "options" | "weights" | None)`` for an official AllenNLP ELMo URL, on any of
    its hosts (``allennlp.s3.amazonaws.com/models/elmo/...``, ``s3-us-west-2.amazonaws.com/allennlp/
    models/elmo/...``); the kind is None for the model's folder URL.

    Raises:
        ModelNotAvailableError: the URL is not one of the official models.
    """
    segments = [s for s in urlparse(url).path.split("/") if s]
    stems = {m.options_url.rsplit("/", 2)[1]: name for name, m in OFFICIAL_MODELS.items()}
    if segments and segments[-1] in stems:  # the model's folder
        return stems[segments[-1]], None
    if len(segments) >= 2 and segments[-2] in stems:
        stem = segments[-2]
        if segments[-1] == f"elmo_{stem}_options.json":
            return stems[stem], "options"
        if segments[-1] == f"elmo_{stem}_weights.hdf5":
            return stems[stem], "weights"
    known = "\n  ".join(m.options_url for m in OFFICIAL_MODELS.values())
    raise ModelNotAvailableError(
        f"{url}: not one of the official ELMo models this package can fetch; download the file and pass "
        f"its local path instead. Official models (options URLs; any AllenNLP host works):\n  {known}"
    )


def is_url(spec: str | Path) -> bool:
    return isinstance(spec, str) and spec.split("://", 1)[0].lower() in ("http", "https", "s3")


def fetch_official_for_url(url: str) -> tuple[Path, Path, str | None]:
    """Local ``(options, weights, kind)`` of the official model an URL names (downloaded once)."""
    name, kind = official_model_for_url(url)
    try:
        options, weights = fetch_official(name)
    except ModelNotAvailableError as err:
        raise ModelNotAvailableError(f"{url} is the official ELMo model '{name}': {err}") from None
    return options, weights, kind


def resolve_model_file(spec: str | Path, kind: str) -> Path:
    """A local path for an ``options_file`` (``kind="options"``) or ``weight_file``
    (``kind="weights"``) argument: a local path, an official URL or a model name."""
    if is_url(spec):
        options, weights, url_kind = fetch_official_for_url(str(spec))
        if url_kind is not None and url_kind != kind:
            raise BackboneUsageError(f"{kind} file: {spec} is the model's {url_kind} file")
        return options if kind == "options" else weights
    if isinstance(spec, str) and not Path(spec).exists() and is_model_name(spec):
        return resolve(spec)[_KINDS.index(kind)]
    return Path(spec)


def resolve_model_files(options_file: str | Path, weight_file: str | Path | None) -> tuple[Path, Path]:
    """``(options, weights)`` local paths for :class:`Elmo`'s first two arguments."""
    if weight_file is None:
        if isinstance(options_file, str) and not Path(options_file).exists() and is_model_name(options_file):
            return resolve(options_file)
        raise BackboneUsageError(
            f"weight_file is None: pass the HDF5 weight file (or a model name as options_file: "
            f"{', '.join(available_names())})"
        )
    return resolve_model_file(options_file, "options"), resolve_model_file(weight_file, "weights")


def add_boundary_vectors(
    vectors: torch.Tensor, lengths: torch.Tensor, bos: torch.Tensor, eos: torch.Tensor
) -> torch.Tensor:
    """``(batch, time, dim)`` -> ``(batch, time + 2, dim)``: ``bos`` first, each row's real vectors,
    ``eos`` right after them, zeros after that (AllenNLP's ``add_sentence_boundary_token_ids``)."""
    batch, time, dim = vectors.shape
    positions = torch.arange(time, device=vectors.device)
    real = (positions[None, :] < lengths[:, None]).unsqueeze(-1)
    body = torch.where(real, vectors, vectors.new_zeros(()))
    out = torch.cat([bos.expand(batch, 1, dim).to(vectors.dtype), body, vectors.new_zeros(batch, 1, dim)], dim=1)
    at_eos = (torch.arange(time + 2, device=vectors.device)[None, :] == (lengths + 1)[:, None]).unsqueeze(-1)
    return torch.where(at_eos, eos.to(vectors.dtype).expand(batch, time + 2, dim), out)


class Elmo(nn.Module):
    """AllenNLP's ``Elmo``: a frozen (or fine-tuned) biLM run once per batch and
    ``num_output_representations`` ScalarMixes of its layers, each followed by dropout.

    Args:
        options_file, weight_file: local paths, official URLs, or a model name (see the module
            docstring); both ``None`` with ``module``.
        num_output_representations: how many independently weighted mixes to return.
        requires_grad: fine-tune the biLM (its parameters get gradients).
        do_layer_norm: normalise each layer over the batch's real positions, ``<S>``/``</S>``
            included, before mixing (AllenNLP's ScalarMix layer norm).
        dropout: applied to each representation.
        vocab_to_cache: words whose char-CNN vectors are computed once here; ``forward`` then also
            accepts ``word_inputs``, indices into this list (0 = padding).
        keep_sentence_boundaries: keep the ``<S>``/``</S>`` positions: outputs have ``time + 2``
            positions and the mask includes the boundaries.
        scalar_mix_parameters: fixed pre-softmax layer weights (one per layer) for every mix; with
            them the mixes (weights and gamma) are not trainable.
        module: an :class:`ElmoBiLm` to use instead of loading files.
        stateful: carry each row's final LSTM state into the next batch, as AllenNLP does. The
            default ``False`` starts every sentence from a zero state (this package's one
            deliberate difference from AllenNLP).
    """

    def __init__(
        self,
        options_file: str | Path | None,
        weight_file: str | Path | None,
        num_output_representations: int,
        requires_grad: bool = False,
        do_layer_norm: bool = False,
        dropout: float = 0.5,
        vocab_to_cache: list[str] | None = None,
        keep_sentence_boundaries: bool = False,
        scalar_mix_parameters: list[float] | None = None,
        module: ElmoBiLm | None = None,
        stateful: bool = False,
    ):
        super().__init__()
        if module is not None:
            if options_file is not None or weight_file is not None:
                raise BackboneUsageError("don't provide options_file or weight_file with module")
            if not isinstance(module, ElmoBiLm):
                raise BackboneUsageError(f"module must be an elmo_core ElmoBiLm, got {type(module).__name__}")
            bilm = module
        else:
            options, weights = resolve_model_files(options_file, weight_file)
            bilm = load_bilm_from_files(options, weights)
        if num_output_representations < 1:
            raise BackboneUsageError(f"num_output_representations must be >= 1, got {num_output_representations}")
        bilm.stateful = stateful
        bilm.reset_states()
        self.bilm = bilm
        self.requires_grad = requires_grad
        for param in bilm.parameters():
            param.requires_grad_(requires_grad)
        if requires_grad:
            bilm.type_cache.max_size = 0  # cached char-CNN vectors would go stale as the weights train
            bilm.type_cache.clear()
        self._keep_sentence_boundaries = keep_sentence_boundaries
        self._dropout = nn.Dropout(p=dropout)
        self._scalar_mixes: list[ScalarMix] = []
        for k in range(num_output_representations):
            mix = ScalarMix(
                bilm.num_layers,
                do_layer_norm=do_layer_norm,
                trainable=scalar_mix_parameters is None,
                initial_weights=list(scalar_mix_parameters) if scalar_mix_parameters is not None else None,
            )
            self.add_module(f"scalar_mix_{k}", mix)
            self._scalar_mixes.append(mix)
        self._has_cached_vocab = vocab_to_cache is not None
        self._word_embedding: nn.Embedding | None = None
        if vocab_to_cache:
            self._cache_vocab(vocab_to_cache)
        self.train(self.training)

    # -- set-up -----------------------------------------------------------------------------------
    def _cache_vocab(self, words: list[str], chunk: int = 1024) -> None:
        """Char-CNN vectors of ``<S>``, ``</S>`` and every word, computed once (AllenNLP's
        ``create_cached_cnn_embeddings``); trainable (apart from the CNN) when fine-tuning."""
        max_chars = self.bilm.options.char_cnn.max_chars
        rows = [*boundary_char_ids(max_chars), *(word_to_char_ids(w, max_chars) for w in words)]
        ids = torch.tensor(rows, dtype=torch.long, device=next(self.bilm.parameters()).device)
        with torch.no_grad():
            vectors = torch.cat([self.bilm.char_cnn(ids[i : i + chunk]) for i in range(0, len(rows), chunk)])
        self.register_buffer("_bos_embedding", vectors[0].clone())
        self.register_buffer("_eos_embedding", vectors[1].clone())
        self._word_embedding = nn.Embedding.from_pretrained(
            vectors[2:].clone(), freeze=not self.requires_grad, padding_idx=0
        )

    def train(self, mode: bool = True):
        if self.requires_grad:
            return super().train(mode)
        # Frozen: the biLM stays in eval mode and is not toggled (toggling clears its char-CNN type
        # cache, and training loops call train() every epoch or step).
        self.training = mode
        for child in self.children():
            if child is not self.bilm:
                child.train(mode)
        if self.bilm.training:
            self.bilm.eval()
        return self

    # -- AllenNLP's public surface ----------------------------------------------------------------
    def get_output_dim(self) -> int:
        return self.bilm.output_dim

    @property
    def num_layers(self) -> int:
        return self.bilm.num_layers

    @property
    def stateful(self) -> bool:
        return self.bilm.stateful

    def reset_states(self) -> None:
        """Forget the carried LSTM state (``stateful=True``); a no-op when stateless."""
        self.bilm.reset_states()

    def forward(
        self, inputs: torch.Tensor, word_inputs: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """``inputs``: char ids ``(batch, time, 50)`` from :func:`batch_to_ids` (any leading
        dimensions: ``(..., time, 50)``). ``word_inputs``: optional ``(batch, time)`` indices into
        ``vocab_to_cache`` (then the char-CNN is not run; ids outside the cache fall back to
        ``inputs``, as in AllenNLP).

        Returns ``{"elmo_representations": [num_output_representations x (batch, time, dim)],
        "mask": (batch, time) bool}`` (``time + 2`` with ``keep_sentence_boundaries``)."""
        original_shape = inputs.shape
        reshaped_inputs = inputs.reshape(-1, *original_shape[-2:]) if inputs.dim() > 3 else inputs
        original_word_size = None
        reshaped_word_inputs = None
        if word_inputs is not None:
            original_word_size = word_inputs.shape
            if not self._has_cached_vocab:
                logger.warning("Word inputs were passed to ELMo but it does not have a cached vocab.")
            else:
                reshaped_word_inputs = word_inputs.reshape(-1, original_word_size[-1])
        layers, mask_with_bos_eos = self.activations(reshaped_inputs, reshaped_word_inputs)

        representations = []
        processed_mask = mask_with_bos_eos
        for mix in self._scalar_mixes:
            representation = mix(layers, mask_with_bos_eos)
            if not self._keep_sentence_boundaries:
                representation, processed_mask = remove_sentence_boundaries(representation, mask_with_bos_eos)
            representations.append(self._dropout(representation))

        if word_inputs is not None and self._has_cached_vocab and len(original_word_size) > 2:
            leading = original_word_size[:-1] + (processed_mask.shape[-1],)
        elif len(original_shape) > 3:
            leading = original_shape[:-2] + (processed_mask.shape[-1],)
        else:
            leading = None
        if leading is not None:
            processed_mask = processed_mask.view(leading)
            representations = [r.view(*leading, -1) for r in representations]
        return {"elmo_representations": representations, "mask": processed_mask}

    # -- the biLM with sentence boundaries --------------------------------------------------------
    def activations(
        self, char_ids: torch.Tensor, word_ids: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """AllenNLP's ``_ElmoBiLm`` output: every layer ``(batch, time + 2, dim)`` with ``<S>``
        first and ``</S>`` after each sentence (layer 0 is the char-CNN vector twice), and the mask
        ``(batch, time + 2)``. Rows without tokens are allowed (they hold only ``<S> </S>``)."""
        bilm = self.bilm
        if bilm.autocast_dtype is not None:
            with torch.autocast(device_type=char_ids.device.type, dtype=bilm.autocast_dtype):
                layers, mask = self._activations(char_ids, word_ids)
            return [layer.float() for layer in layers], mask
        return self._activations(char_ids, word_ids)

    def _activations(
        self, char_ids: torch.Tensor, word_ids: torch.Tensor | None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        bilm = self.bilm
        use_words = (
            word_ids is not None
            and self._word_embedding is not None
            and bool(((word_ids >= 0) & (word_ids < self._word_embedding.num_embeddings)).all())
        )
        grad = torch.enable_grad() if self.requires_grad and torch.is_grad_enabled() else torch.no_grad()
        with grad:
            types = None
            if use_words:
                mask = word_ids > 0
                lengths = mask.sum(dim=1)
                tokens = add_boundary_vectors(
                    self._word_embedding(word_ids), lengths, self._bos_embedding, self._eos_embedding
                )
            else:
                bilm.check_char_ids(char_ids)
                char_ids = char_ids.long()
                mask = (char_ids > 0).any(dim=-1)
                lengths = mask.sum(dim=1)
                with_bounds = add_sentence_boundaries(char_ids, lengths, bilm.options.char_cnn.max_chars)
                # As bilm.forward and pretraining do: the first layer's input GEMM once per distinct word.
                types = bilm.token_types(with_bounds)
                tokens = types.embeddings()
            time = mask.shape[1] + 2
            mask_with_bos_eos = torch.arange(time, device=mask.device)[None, :] < (lengths + 2)[:, None]
            lstm_layers = bilm.run_lstms(tokens, lengths + 2, types=types)
            layer0 = torch.cat([tokens, tokens], dim=-1) * mask_with_bos_eos.unsqueeze(-1).to(tokens.dtype)
        return [layer0, *lstm_layers], mask_with_bos_eos


def remove_sentence_boundaries(tensor: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(batch, time + 2, dim)`` with boundaries -> ``(batch, time, dim)`` without them, zeros past
    each sentence (AllenNLP's ``remove_sentence_boundaries``); returns the new mask too."""
    lengths = mask.sum(dim=1) - 2
    time = tensor.shape[1] - 2
    new_mask = torch.arange(time, device=mask.device)[None, :] < lengths[:, None]
    stripped = tensor[:, 1 : time + 1]
    return torch.where(new_mask.unsqueeze(-1), stripped, stripped.new_zeros(())), new_mask
