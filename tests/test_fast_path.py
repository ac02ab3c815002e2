"""The inference shortcuts of the fast path each give the straightforward computation's numbers:
the char-CNN convolved over each word's own characters only (by one GEMM or from the window
table), the distinct words found by a byte sort, the boundary steps skipped, the first
layer's input GEMM once per distinct word, the input gates made chunk by chunk into reused memory,
tanh through sigmoid, the recurrent GEMM through oneDNN's packed weight; and bf16 only where the CPU
has bf16 matrix units."""

import copy
import io
import warnings
from unittest import mock

import pytest
import torch

from elmo_core import batch_to_ids, char_cnn, load_bilm, lstm, onednn
from elmo_core.bilm import distinct_rows
from elmo_core.char_ids import MAX_CHARS
from elmo_core.hardware import bf16_matrix_units, cpu_flags
from elmo_core.loading import quantize_int8
from elmo_core.lstm import PACKED_RECURRENT_MIN_BYTES, ProjectedLstmLayer, _gate_chunks
from elmo_core.random_model import random_bilm
from elmo_core.reference import ReferenceLayers
from helpers import TINY_OPTIONS

SENTENCES = [
    "The dog let out a sharp bark".split(),
    "Bark".split(),
    "The bark of the ancient oak was rough and grey , the dog said .".split(),
    "Zürich 's naïve café ‘ quotes ’".split(),
]
# every word length from 1 character to past the 48 a word keeps, and multi-byte characters
WORDS = ["x" * n for n in range(1, 60)] + ["é" * 30, "<S>", "</S>", "a", "ab"]


@pytest.mark.parametrize("filters", [[[1, 4], [2, 4], [3, 8], [7, 16]], [[2, 5]], [[5, 3], [1, 2]]])
@pytest.mark.parametrize("max_chars", [MAX_CHARS, 12])
@pytest.mark.parametrize("table", [False, True])
def test_char_cnn_by_length_equals_every_window(filters, max_chars, table, monkeypatch):
    """Both ways of scoring the windows (one GEMM; sums of window-table rows, here also split into
    several embedding_bag calls per length) give every window's maximum."""
    options = {**TINY_OPTIONS, "char_cnn": {**TINY_OPTIONS["char_cnn"], "filters": filters}}
    options["char_cnn"]["max_characters_per_token"] = max_chars
    cnn = random_bilm(options, seed=1, init="scaled-normal").char_cnn
    cnn.window_table_pooling = table
    monkeypatch.setattr(char_cnn, "_POOL_WINDOWS", 7)
    ids = batch_to_ids([WORDS + WORDS[::3]], max_chars)[0]  # several words of each length
    ids = torch.cat([ids, torch.zeros(1, max_chars, dtype=ids.dtype)])  # an all-padding row too
    with torch.no_grad():
        full, by_length = cnn.pool_full_width(ids), cnn.pool_by_length(ids)
    assert by_length.shape == full.shape
    assert (by_length - full).abs().max() <= 1e-5 * max(1.0, float(full.abs().max()))


def test_window_table_pooling_from_1024_filters_on():
    """The table scores the official ELMo's 2048 filters; smaller char-CNNs (the shipped default's
    512) keep the GEMM and its bits; the switch overrides either way."""
    small = random_bilm(TINY_OPTIONS, seed=0).char_cnn
    assert small.options.n_filters < char_cnn.TABLE_POOL_MIN_FILTERS and not small.uses_window_table()
    wide = {**TINY_OPTIONS["char_cnn"], "filters": [[1, 512], [2, 512]]}
    assert random_bilm({**TINY_OPTIONS, "char_cnn": wide}, seed=0).char_cnn.uses_window_table()
    small.window_table_pooling = True
    assert small.uses_window_table()


def test_window_table_follows_the_weights():
    """The table is made once per weight version: an in-place change of a filter or of the
    character embedding makes a new one, and the pooled scores follow."""
    cnn = random_bilm(TINY_OPTIONS, seed=0, init="scaled-normal").char_cnn
    cnn.window_table_pooling = True
    ids = batch_to_ids([WORDS])[0]
    with torch.no_grad():
        first = cnn.window_table()[0]
        assert cnn.window_table()[0] is first
        for edit in (cnn.convolutions[0].weight, cnn.char_embedding.weight):
            edit.mul_(1.5)
            assert torch.allclose(cnn.pool_by_length(ids), cnn.pool_full_width(ids), atol=1e-5)
        assert cnn.window_table()[0] is not first


def test_window_table_pooling_in_float64_and_under_bf16_autocast():
    """A float64 model's table is float64 (benchmarks/fp32_rounding.py's exact reference); under
    bf16 autocast the table stays in the weights' float32 and the pooled scores with it."""
    cnn = random_bilm(TINY_OPTIONS, seed=0, init="scaled-normal").char_cnn
    cnn.window_table_pooling = True
    ids = batch_to_ids([WORDS])[0]
    with torch.no_grad():
        exact = copy.deepcopy(cnn).double()
        assert exact.pool_by_length(ids).dtype == torch.float64
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pooled = cnn.pool_by_length(ids)
        assert pooled.dtype == torch.float32
        assert torch.allclose(pooled.double(), exact.pool_full_width(ids), atol=1e-5)


def test_char_cnn_by_length_only_without_autograd(tiny_model):
    bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    calls = []
    bilm.char_cnn.pool_by_length = lambda ids: (
        calls.append("by_length") or type(bilm.char_cnn).pool_by_length(bilm.char_cnn, ids)
    )
    ids = batch_to_ids([["a", "bark"]])[0]
    with torch.no_grad():
        bilm.char_cnn(ids)
    bilm.char_cnn(ids)  # with autograd: the differentiable windows (WindowMaxPool), not pool_by_length
    assert calls == ["by_length"]


def test_skipped_boundary_steps_change_nothing_kept(tiny_model):
    bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    ids = batch_to_ids(SENTENCES)
    with torch.no_grad():
        fast = bilm(ids).layers
        bilm.skip_boundary_steps = False
        every_step = bilm(ids).layers
    assert (fast - every_step).abs().max() <= 1e-6


def test_first_layer_input_gemm_runs_once_per_distinct_word(tiny_model):
    bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    rows = []
    layer = bilm.forward_layers[0]
    input_gates = layer.input_gates
    layer.input_gates = lambda packed, *args: rows.append(packed.shape[0]) or input_gates(packed, *args)
    sentences = [["the", "dog", "the", "dog"], ["the", "dog"]]
    with torch.no_grad():
        bilm(batch_to_ids(sentences))
    # <S>, </S>, "the", "dog" (+ the padding row) instead of 4 + 2 positions (forward stops before </S>)
    assert rows == [5]


@pytest.mark.parametrize("go_forward", [True, False])
def test_gate_chunks_cover_every_packed_row_once_in_step_order(go_forward):
    active = [5, 5, 4, 2, 2, 1, 1]
    steps = range(7) if go_forward else range(6, -1, -1)
    for max_rows in (5, 7, 9, 11, 100):
        chunks = _gate_chunks(active, steps, max_rows)
        assert list(chunks) == [t for t in steps if t in chunks] and next(iter(chunks)) == steps[0]
        spans = sorted(chunks.values())
        assert spans[0][0] == 0 and spans[-1][1] == sum(active)
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous, no overlap
        assert all(hi - lo <= max_rows for lo, hi in spans)
    assert len(_gate_chunks(active, steps, 5)) == 7 - 2  # steps of 2 + 2 and 1 + 1 rows share a chunk


@pytest.mark.parametrize("chunk_rows", [0, 6, 1 << 20])
def test_input_gates_made_chunk_by_chunk_give_the_same_vectors(tiny_model, monkeypatch, chunk_rows):
    """One step per chunk, a few steps per chunk, everything at once: the same vectors, for the
    gates gathered per distinct word (first layer) and computed per position (second layer)."""
    bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    ids = batch_to_ids(SENTENCES)
    with torch.no_grad():
        with ReferenceLayers(bilm):
            slow = bilm(ids).layers
        monkeypatch.setattr("elmo_core.lstm._CHUNK_ROWS", chunk_rows)
        counts = []
        monkeypatch.setattr(
            "elmo_core.lstm._gate_chunks", lambda *args: counts.append(len(_gate_chunks(*args))) or _gate_chunks(*args)
        )
        fast = bilm(ids).layers
        assert len(counts) == 4 and (max(counts) == 1 if chunk_rows > 100 else min(counts) > 1)
        again = bilm(batch_to_ids(SENTENCES[:2])).layers  # the reused scratch memory of another size
        assert torch.equal(again, bilm(batch_to_ids(SENTENCES[:2])).layers)
    assert (fast - slow).abs().max() <= 1e-5
    assert (again - fast[:, :2, : again.shape[2]]).abs().max() <= 1e-6


def test_stateful_mode_computes_every_step(tiny_model):
    stateless = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    stateful = load_bilm(options=tiny_model[0], weights=tiny_model[1], stateful=True)
    ids = batch_to_ids(SENTENCES)
    with torch.no_grad():
        a, b = stateless(ids).layers, stateful(ids).layers
    assert (a - b).abs().max() <= 1e-6  # first batch: same zero state, same kept outputs


def test_hardware_flags():
    assert bf16_matrix_units(frozenset({"avx512f", "amx_bf16", "avx512_bf16"})) == "AMX"
    assert bf16_matrix_units(frozenset({"avx512f", "avx512_bf16"})) == "AVX512-BF16"
    assert bf16_matrix_units(frozenset({"avx2", "avx512f"})) is None
    assert isinstance(cpu_flags(), frozenset)


def test_bf16_without_matrix_units_runs_fp32_with_a_warning(tiny_model, monkeypatch):
    monkeypatch.setattr("elmo_core.loading.bf16_matrix_units", lambda: None)
    with pytest.warns(UserWarning, match="no bf16 matrix units"):
        bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1], precision="bf16")
    assert bilm.precision == "fp32" and bilm.autocast_dtype is None
    exact = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    with torch.no_grad():
        assert torch.equal(bilm(batch_to_ids(SENTENCES)).layers, exact(batch_to_ids(SENTENCES)).layers)


def test_bf16_with_matrix_units_stays_close_to_fp32(tiny_model, monkeypatch):
    monkeypatch.setattr("elmo_core.loading.bf16_matrix_units", lambda: "AVX512-BF16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1], precision="bf16")
    assert bilm.precision == "bf16" and bilm.autocast_dtype == torch.bfloat16
    exact = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    ids = batch_to_ids(SENTENCES)
    with torch.no_grad():
        low, high = bilm(ids).layers, exact(ids).layers
    assert low.dtype == torch.float32
    assert 0 < (low - high).abs().max() <= 0.05 * float(high.abs().max())


def _recurrent_gemms(bilm) -> set[str]:
    """Which GEMMs each LSTM layer's in-place step used: ``packed`` (oneDNN for the recurrent and
    the input weight), ``addmm`` (MKL for both), or ``mixed`` (a bug: one weight packed, not the other)."""
    kinds = {(True, True): "packed", (False, False): "addmm"}
    return {
        kinds.get((layer._weights.recurrent_packed is not None, layer._weights.input_packed is not None), "mixed")
        for layer in bilm.modules()
        if hasattr(layer, "prepacked_weights")
    }


def _prepack(bilm, wanted: bool | None):
    """Sets every LSTM layer's ``prepacked_weights`` (None: by weight size); returns ``bilm``."""
    for layer in bilm.modules():
        if hasattr(layer, "prepacked_weights"):
            layer.prepacked_weights = wanted
    return bilm


def test_onednn_linear_is_there_where_pytorch_has_onednn():
    """The packed recurrent GEMM relies on a private op; this build must keep it (a torch upgrade that
    drops or changes it would silently cost issue #17's speed-up, so it fails here instead)."""
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this PyTorch has no oneDNN: the step uses addmm_")
    assert onednn.available()
    x, w, other = torch.randn(7, 3), torch.randn(5, 3), torch.randn(7, 5)
    assert (onednn.linear_add(x, onednn.pack_weight(w), other) - torch.addmm(other, x, w.t())).abs().max() <= 1e-5
    bias = other[0]
    assert (onednn.linear(x, onednn.pack_weight(w), bias) - torch.addmm(bias, x, w.t())).abs().max() <= 1e-5


def test_small_recurrent_weights_keep_addmm(tiny_model):
    """Below PACKED_RECURRENT_MIN_BYTES (the shipped default's 2 MB, "small") MKL's addmm_ is faster."""
    bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    with torch.no_grad():
        bilm(batch_to_ids(SENTENCES))
    assert _recurrent_gemms(bilm) == {"addmm"}


@pytest.mark.parametrize("threads", [1, 2])
def test_packed_recurrent_gemm_gives_the_reference_numbers(tiny_model, threads):
    """oneDNN's packed recurrent GEMM (CPU fp32, large weights by default; here forced on): the
    per-step reference loop's vectors, the addmm_ step's within float rounding, the same bits on a
    second call; switching it off goes back to addmm_ exactly."""
    if not onednn.available():
        pytest.skip("this PyTorch has no usable oneDNN linear")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        bilm = _prepack(load_bilm(options=tiny_model[0], weights=tiny_model[1]), True)
        ids = batch_to_ids(SENTENCES)
        with torch.no_grad():
            with ReferenceLayers(bilm):
                slow = bilm(ids).layers
            packed = bilm(ids).layers
            assert _recurrent_gemms(bilm) == {"packed"}
            assert torch.equal(packed, bilm(ids).layers)
            plain = _prepack(bilm, False)(ids).layers
            assert _recurrent_gemms(bilm) == {"addmm"}
        plain_model = _prepack(load_bilm(options=tiny_model[0], weights=tiny_model[1]), True)
        with mock.patch("elmo_core.lstm.onednn_available", lambda: False), torch.no_grad():
            unavailable = plain_model(ids).layers
        assert _recurrent_gemms(plain_model) == {"addmm"}
    finally:
        torch.set_num_threads(before)
    assert (packed - slow).abs().max() <= 1e-5
    assert (packed - plain).abs().max() <= 1e-5  # different GEMM code: rounding only
    assert torch.equal(plain, unavailable)


@pytest.mark.parametrize("chunk_rows", [1, 5, 256])
def test_packed_input_gates_chunk_by_chunk_give_the_reference_numbers(tiny_model, monkeypatch, chunk_rows):
    """With the weights packed for oneDNN, the input gates are made at most ``_PACKED_CHUNK_ROWS``
    rows per GEMM (the per-word gates of the first layer too): the reference loop's vectors
    whatever the chunk size, and the same bits as with the shipped chunk size up to rounding."""
    if not onednn.available():
        pytest.skip("this PyTorch has no usable oneDNN linear")
    ids = batch_to_ids(SENTENCES)
    bilm = _prepack(load_bilm(options=tiny_model[0], weights=tiny_model[1]), True)
    with torch.no_grad():
        with ReferenceLayers(bilm):
            slow = bilm(ids).layers
        shipped = bilm(ids).layers
        rows = []
        linear = lstm.onednn_linear
        monkeypatch.setattr("elmo_core.lstm._PACKED_CHUNK_ROWS", chunk_rows)
        monkeypatch.setattr("elmo_core.lstm.onednn_linear", lambda x, *a: rows.append(x.shape[0]) or linear(x, *a))
        chunked = bilm(ids).layers
    assert _recurrent_gemms(bilm) == {"packed"}
    assert rows and max(rows) <= chunk_rows
    assert (chunked - slow).abs().max() <= 1e-5
    assert (chunked - shipped).abs().max() <= 1e-5


def test_a_model_that_has_run_with_packed_weights_can_be_copied_and_saved(tiny_model):
    """oneDNN's packed weights have no storage: copy.deepcopy and torch.save of a model that had run
    raised NotImplementedError ("Cannot access storage of OpaqueTensorImpl"). The copies leave the
    cache out, give the same bits, and int8 quantisation (which deep-copies) works after a run too."""
    if not onednn.available():
        pytest.skip("this PyTorch has no usable oneDNN linear")
    bilm = _prepack(load_bilm(options=tiny_model[0], weights=tiny_model[1]), True)
    ids = batch_to_ids(SENTENCES)
    with torch.no_grad():
        ran = bilm(ids).layers
        assert _recurrent_gemms(bilm) == {"packed"}
        copied = copy.deepcopy(bilm)
        buffer = io.BytesIO()
        torch.save(bilm, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        assert torch.equal(copied(ids).layers, ran) and torch.equal(loaded(ids).layers, ran)
        assert _recurrent_gemms(copied) == {"packed"}
        assert torch.equal(bilm(ids).layers, ran)  # the original keeps its own packed weights
        quantized = quantize_int8(bilm)
        assert (quantized(ids).layers - ran).abs().max() <= 0.05 * float(ran.abs().max())


def test_packed_recurrent_gemm_only_in_fp32(tiny_model, monkeypatch):
    monkeypatch.setattr("elmo_core.loading.bf16_matrix_units", lambda: "AVX512-BF16")
    bilm = _prepack(load_bilm(options=tiny_model[0], weights=tiny_model[1], precision="bf16"), True)
    with torch.no_grad():
        bilm(batch_to_ids(SENTENCES))
    assert _recurrent_gemms(bilm) == {"addmm"}  # autocast's bf16 GEMM, not the fp32 packed weight


def test_float64_model_keeps_addmm(tiny_model):
    """oneDNN's linear takes no float64: a float64 model (fp32_rounding.py's yardstick) steps with addmm_."""
    bilm = _prepack(load_bilm(options=tiny_model[0], weights=tiny_model[1]).double(), True)
    with torch.no_grad():
        layers = bilm(batch_to_ids(SENTENCES)).layers
    assert layers.dtype == torch.float64 and _recurrent_gemms(bilm) == {"addmm"}


def test_large_recurrent_weights_go_through_onednn_by_default():
    """A recurrent weight of PACKED_RECURRENT_MIN_BYTES (256 x 4096 fp32 = 4 MB) takes the packed
    path without any setting and gives addmm_'s outputs within rounding; a 2 MB one only when forced."""
    if not onednn.available():
        pytest.skip("this PyTorch has no usable oneDNN linear")
    torch.manual_seed(0)
    layer = ProjectedLstmLayer(8, 1024, 256, 3.0, 3.0, go_forward=False)
    assert layer.state_linear.weight.numel() * 4 == PACKED_RECURRENT_MIN_BYTES
    inputs, lengths = torch.randn(5, 9, 8), torch.tensor([9, 3, 7, 1, 9])
    with torch.no_grad():
        packed, _ = layer(inputs, lengths)
        assert layer._weights.recurrent_packed is not None and layer._weights.input_packed is not None
        layer.prepacked_weights = False
        plain, _ = layer(inputs, lengths)
        small = ProjectedLstmLayer(8, 1024, 128, 3.0, 3.0, go_forward=True)  # 2 MB: addmm_ unless forced
        small(inputs, lengths)
        assert small._weights.recurrent_packed is None
        small.prepacked_weights = True
        small(inputs, lengths)
        assert small._weights.recurrent_packed is not None
        assert layer._weights.recurrent_packed is None
    assert (packed - plain).abs().max() <= 1e-5


@pytest.mark.parametrize("packed", [False, True])
def test_inference_mode_then_no_grad_in_one_thread(tiny_model, packed):
    """The reused scratch memory (workspace.py) made under torch.inference_mode() is still writable
    by a later call under no_grad (it used to be an inference tensor: "Inplace update to inference
    tensor outside InferenceMode"), and the other way round; the vectors are the same bits."""
    if packed and not onednn.available():
        pytest.skip("this PyTorch has no usable oneDNN linear")
    bilm = _prepack(load_bilm(options=tiny_model[0], weights=tiny_model[1]), packed)
    ids = batch_to_ids(SENTENCES)
    with torch.inference_mode():
        first = bilm(ids).layers
    with torch.no_grad():
        second = bilm(ids).layers
    with torch.inference_mode():
        third = bilm(ids).layers
    assert torch.equal(first, second) and torch.equal(second, third)


@pytest.mark.parametrize("dtype", [torch.long, torch.int32, torch.int16])
def test_distinct_rows_are_torch_uniques(dtype):
    """The byte sort gives torch.unique(dim=0)'s rows, order and inverse exactly (so the char-CNN
    sees the same words in the same order), ids above 255 included."""
    generator = torch.Generator().manual_seed(0)
    for n, width, high in ((1, 5, 262), (300, 3, 3), (2000, 50, 262), (40, 50, 2)):
        rows = torch.randint(0, high, (n, width), generator=generator).to(dtype)
        rows = torch.cat([rows, rows.flip(0)[: n // 2]])  # repeats, out of order
        words, inverse = distinct_rows(rows)
        expected = torch.unique(rows, dim=0, return_inverse=True)
        assert words.dtype == rows.dtype and inverse.dtype == torch.long
        assert torch.equal(words, expected[0]) and torch.equal(inverse, expected[1])


def test_distinct_rows_outside_16_bits_fall_back_to_torch():
    rows = torch.tensor([[70000, 1], [-3, 2], [70000, 1]])
    words, inverse = distinct_rows(rows)
    assert torch.equal(words, torch.tensor([[-3, 2], [70000, 1]])) and inverse.tolist() == [1, 0, 1]
