"""Named models: download into a cache with integrity checks (tested on local file:// URLs)."""

import json

import pytest

from elmo_core import ModelNotAvailableError, models
from elmo_core.errors import ElmoFileError


@pytest.fixture
def local_registry(tiny_model, monkeypatch, tmp_path):
    options, weights = tiny_model
    entry = models.NamedModel("tiny-local", options.as_uri(), weights.as_uri(), "test model")
    monkeypatch.setitem(models.OFFICIAL_MODELS, "tiny-local", entry)
    monkeypatch.setenv("ELMO_TASKS_CACHE", str(tmp_path / "cache"))
    return entry


def test_download_caches_checks_and_records_sha256(local_registry, tmp_path):
    options, weights = models.resolve("tiny-local")
    assert options.parent == tmp_path / "cache" / "tiny-local"
    record = json.loads((options.parent / "sha256.json").read_text())
    assert set(record) == {"options.json", "weights.hdf5"}
    assert models.resolve("tiny-local") == (options, weights)  # served from the cache


def test_tampered_cache_is_downloaded_again(local_registry, tmp_path):
    options, weights = models.resolve("tiny-local")
    good = weights.read_bytes()
    weights.write_bytes(good[:100])
    models.resolve("tiny-local")
    assert weights.read_bytes() == good


def test_corrupt_download_is_rejected(local_registry, tmp_path, monkeypatch):
    bad = tmp_path / "bad.hdf5"
    bad.write_text("not hdf5")
    monkeypatch.setitem(
        models.OFFICIAL_MODELS,
        "tiny-local",
        models.NamedModel("tiny-local", local_registry.options_url, bad.as_uri(), ""),
    )
    with pytest.raises(ElmoFileError, match="not an HDF5 file"):
        models.resolve("tiny-local")


def test_offline_error_names_the_urls_and_the_local_alternative(monkeypatch, tmp_path):
    monkeypatch.setenv("ELMO_TASKS_CACHE", str(tmp_path))
    monkeypatch.setitem(
        models.OFFICIAL_MODELS,
        "small",
        models.NamedModel("small", "http://127.0.0.1:9/options.json", "http://127.0.0.1:9/weights.hdf5", ""),
    )
    with pytest.raises(ModelNotAvailableError) as info:
        models.resolve("small")
    message = str(info.value)
    assert "http://127.0.0.1:9/weights.hdf5" in message and "--options FILE --weights FILE" in message


def test_official_registry_has_the_four_public_models():
    assert set(models.OFFICIAL_MODELS) == {"small", "medium", "original", "original-5.5b"}
    assert models.OFFICIAL_MODELS["original"].weights_url.endswith(
        "2x4096_512_2048cnn_2xhighway/elmo_2x4096_512_2048cnn_2xhighway_weights.hdf5"
    )


def test_unknown_name():
    with pytest.raises(ModelNotAvailableError, match="unknown ELMo model 'nope'"):
        models.resolve("nope")
