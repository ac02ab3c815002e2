"""A configured feature store (``backbone.store``) after the backbone changes: the new model's
features go to ``<store>/by-model/<id>/``, the old model's stay where they were, untouched."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from elmo_core import load_bilm
from elmo_core.loading import model_identity
from elmo_core.store import FeatureStore, FeatureStoreError, build_store
from helpers import SENTENCES, write_conll, write_random_model
from tasks.config import BackboneConfig
from tasks.features import StoreFeatures, feature_source, store_dir_for_model

TOKENS = [[w for w, _ in s] for s in SENTENCES]


@pytest.fixture
def two_models(tmp_path):
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    a = write_random_model(tmp_path / "a", seed=1)
    b = write_random_model(tmp_path / "b", seed=2)
    yield a, b
    torch.set_num_threads(saved)


def backbone(files, store: Path) -> BackboneConfig:
    return BackboneConfig(name=None, options=str(files[0]), weights=str(files[1]), store=str(store))


def files_of(directory: Path) -> dict[str, tuple[int, int, str]]:
    """relative path -> (inode, mtime_ns, sha256) of every file outside by-model/."""
    return {
        str(p.relative_to(directory)): (
            p.stat().st_ino,
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(directory.rglob("*"))
        if p.is_file() and "by-model" not in p.relative_to(directory).parts
    }


def built_data(directory: Path) -> dict:
    """What a rebuild would change: the chunk files (inode, bytes), store.json and the index's bytes."""
    files = files_of(directory)
    return {
        "chunks": {name: (ino, sha) for name, (ino, _, sha) in files.items() if name.startswith("chunks/")},
        "store.json": files["store.json"],
        "index.tsv": (directory / "index.tsv").read_bytes(),
    }


def test_a_second_model_gets_its_own_sub_store_and_the_first_is_untouched(two_models, tmp_path):
    (a_files, b_files), store = two_models, tmp_path / "store"
    id_a, id_b = model_identity(*a_files), model_identity(*b_files)
    bilm_a, bilm_b = (
        load_bilm(options=a_files[0], weights=a_files[1]),
        load_bilm(options=b_files[0], weights=b_files[1]),
    )
    said: list[str] = []

    first = feature_source(backbone(a_files, store), bilm_a, TOKENS, progress=False, log=said.append)
    assert FeatureStore(store).model_id == id_a and not (store / "by-model").exists() and said == []
    a_before = files_of(store)

    # The configured directory holds A's features: B builds beside them instead of failing.
    second = feature_source(backbone(b_files, store), bilm_b, TOKENS, progress=False, log=said.append)
    sub = store / "by-model" / id_b[:16]
    assert FeatureStore(sub, id_b).model_id == id_b and len(FeatureStore(sub)) == len(TOKENS)
    assert files_of(store) == a_before  # A's files: same inodes, times and bytes
    assert said == [f"{store} holds another model's features ({id_a}); using {sub} for model {id_b}"]

    # B's features are B's: equal to a store B builds directly, close to B's forward pass, not A's.
    direct = FeatureStore.build(tmp_path / "direct", bilm_b, id_b, TOKENS, progress=False)
    got = second.sentence_layers(list(range(len(TOKENS))))
    for tokens, array, a_array in zip(TOKENS, got, first.sentence_layers(list(range(len(TOKENS))))):
        assert np.array_equal(array, direct.get(tokens))
        assert not np.allclose(array, a_array)
    from elmo_core.char_ids import batch_to_ids

    with torch.no_grad():
        forward = bilm_b(batch_to_ids(TOKENS[:1])).layers[:, 0, : len(TOKENS[0])].numpy()
    np.testing.assert_allclose(got[0].astype(np.float32), forward, atol=1e-2, rtol=1e-2)

    # A again: the top-level store, nothing rebuilt, no line logged; B again: its sub-store, as is.
    b_before = built_data(sub)
    built_data_before = built_data(store)
    again = StoreFeatures.open(store, bilm_a, id_a, TOKENS, "float16", progress=False, log=said.append)
    assert len(said) == 1
    assert built_data(store) == built_data_before  # no chunk written or replaced (the lock files and the
    # compaction's rewrite of index.tsv, same bytes, are what any re-run of a complete store does)
    assert all(np.array_equal(x, y) for x, y in zip(again.arrays, first.arrays))
    feature_source(backbone(b_files, store), bilm_b, TOKENS, progress=False, log=said.append)
    assert built_data(sub) == b_before

    # elmo_core stays strict, and its own reading of the top-level store ignores by-model/.
    with pytest.raises(FeatureStoreError, match="holds features of model"):
        build_store(store, bilm_b, id_b, TOKENS, progress=False)
    assert len(FeatureStore(store, id_a)) == len(TOKENS)


def test_a_third_model_gets_a_third_directory(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    assert store_dir_for_model(store, "m1") == store  # no store.json yet: the store itself
    (store / "store.json").write_text(
        '{"format": 1, "model_id": "m1", "num_layers": 3, "dim": 16, "dtype": "float16"}\n'
    )
    assert store_dir_for_model(store, "m1") == store
    said: list[str] = []
    assert store_dir_for_model(store, "0123456789abcdef", said.append) == store / "by-model" / "0123456789abcdef"
    assert store_dir_for_model(store, "fedcba9876543210", said.append) == store / "by-model" / "fedcba9876543210"
    assert len(said) == 2


def test_training_after_a_backbone_change_keeps_working(two_models, tmp_path):
    """The reported failure: ``elmo-tasks train`` on a store built with the previous backbone."""
    from tasks.registry import load_task_config
    from tasks.trainer import Trainer

    a_files, b_files = two_models
    write_conll(tmp_path / "train.txt", SENTENCES * 2)
    write_conll(tmp_path / "dev.txt", SENTENCES[:3])
    write_conll(tmp_path / "test.txt", SENTENCES[3:])

    def config(files):
        overrides = {
            "data.dir": str(tmp_path),
            "data.train": "train.txt",
            "data.dev": "dev.txt",
            "data.test": "test.txt",
            "backbone.name": None,
            "backbone.options": str(files[0]),
            "backbone.weights": str(files[1]),
            "backbone.store": str(tmp_path / "store"),
            "train.epochs": 1,
            "train.threads": 1,
            "model.hidden": 8,
            "model.words.min_count": 1,
        }
        return load_task_config(Path(__file__).resolve().parents[1] / "configs" / "ner_conll2003.yaml", overrides)

    Trainer(config(a_files), tmp_path / "run_a", progress=False, log=lambda *_: None).run()
    said: list[str] = []
    Trainer(config(b_files), tmp_path / "run_b", progress=False, log=said.append).run()
    id_b = model_identity(*b_files)
    assert (tmp_path / "store" / "by-model" / id_b[:16] / "store.json").is_file()
    assert sum("holds another model's features" in line for line in said) == 1


def test_another_model_creating_the_store_first_is_taken_into_account(two_models, tmp_path, monkeypatch):
    """Two backbones started side by side on a fresh store: the one that looked before the other
    wrote store.json retries in its by-model/ directory instead of failing."""
    import tasks.features as features

    (a_files, b_files), store = two_models, tmp_path / "store"
    id_a, id_b = model_identity(*a_files), model_identity(*b_files)
    bilm_a, bilm_b = (
        load_bilm(options=a_files[0], weights=a_files[1]),
        load_bilm(options=b_files[0], weights=b_files[1]),
    )
    real = features.store_dir_for_model
    looks: list[Path] = []

    def look_then_lose_the_race(directory, model_id, log=None):
        if not looks:  # B looks at a fresh store, then A builds there first
            looks.append(real(directory, model_id, log))
            build_store(store, bilm_a, id_a, TOKENS, progress=False)
            return looks[0]
        looks.append(real(directory, model_id, log))
        return looks[-1]

    monkeypatch.setattr(features, "store_dir_for_model", look_then_lose_the_race)
    StoreFeatures.open(store, bilm_b, id_b, TOKENS, "float16", progress=False, log=lambda *_: None)
    assert looks == [store, store / "by-model" / id_b[:16]]
    assert FeatureStore(store).model_id == id_a and len(FeatureStore(looks[1], id_b)) == len(TOKENS)
