"""The reference procedure against outputs of the original TensorFlow biLM (AllenNLP's check)."""

import json

import h5py
import numpy as np
import torch

from elmo_core import batch_to_ids, load_bilm
from helpers import shared_path
from tasks.cli import main


def load_reference():
    folder = shared_path("elmo-fixtures")
    sentences = json.loads((folder / "sentences.json").read_text())
    expected = []
    for k in range(3):
        with h5py.File(folder / f"lm_embeddings_{k}.hdf5", "r") as handle:
            expected.append([np.concatenate([handle[str(i)][0], handle[str(i)][1]], axis=-1) for i in range(10)])
    return folder, sentences, expected


def test_stateful_api_reproduces_tensorflow_top_layer():
    folder, sentences, expected = load_reference()
    bilm = load_bilm(options=folder / "options.json", weights=folder / "lm_weights.hdf5", stateful=True)
    worst = 0.0
    with torch.no_grad():
        for i in range(10):  # batch i holds the i-th sentence of each of the three lists
            batch = [sentences[k][i].split() for k in range(3)]
            out = bilm(batch_to_ids(batch))
            assert out.mask.sum(1).tolist() == [len(s) for s in batch]
            for k in range(3):
                got = out.layers[2, k, : len(batch[k])].numpy()
                assert np.allclose(got, expected[k][i], atol=1e-6)
                worst = max(worst, float(np.abs(got - expected[k][i]).max()))
    print(f"max abs difference against the TF biLM: {worst:.3g}")
    assert worst < 5e-6


def test_stateless_mode_differs_after_the_first_batch():
    """Proves the carried state matters, so the stateful test really tests it."""
    folder, sentences, expected = load_reference()
    bilm = load_bilm(options=folder / "options.json", weights=folder / "lm_weights.hdf5")
    with torch.no_grad():
        first = bilm(batch_to_ids([sentences[k][0].split() for k in range(3)])).layers[2, 0]
        second = bilm(batch_to_ids([sentences[k][1].split() for k in range(3)])).layers[2, 0]
    assert np.allclose(first[: len(expected[0][0])].numpy(), expected[0][0], atol=1e-6)
    n = len(expected[0][1])
    assert not np.allclose(second[:n].numpy(), expected[0][1], atol=1e-4)


def test_cli_embed_stateful_reproduces_tensorflow_top_layer(tmp_path):
    folder, sentences, expected = load_reference()
    lines = [sentences[k][i] for i in range(10) for k in range(3)]
    text = tmp_path / "sentences.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.hdf5"
    code = main(
        [
            "embed",
            "--options",
            str(folder / "options.json"),
            "--weights",
            str(folder / "lm_weights.hdf5"),
            "--input",
            str(text),
            "--output",
            str(out),
            "--batch-size",
            "3",
            "--stateful",
            "--quiet",
        ]
    )
    assert code == 0
    with h5py.File(out, "r") as handle:
        index = json.loads(handle["sentence_to_index"][0])
        assert len(index) == 30
        for line_number, line in enumerate(lines):
            k, i = line_number % 3, line_number // 3
            layers = handle[str(line_number)][...]
            assert layers.shape == (3, len(line.split()), 32)
            assert np.allclose(layers[2], expected[k][i], atol=1e-6)
            assert index[line] == str(line_number)
