"""Task-side token encoders: pretrained-vector initialisation, the vocabulary it implies, the character CNN."""

import pytest
import torch

from data.errors import DataError
from data.vectors import load_vectors
from tasks.config import CharsConfig, WordsConfig
from tasks.encoders import (
    CharCnn,
    Vocab,
    fit_token_inputs,
    pretrained_init,
    token_encoder_from_config,
    token_vocabularies,
)


def small_vectors(tmp_path, text="dog 1.0 2.0 3.0\nunseen 9 9 9\ncat -1 0 0.5\n1996 0 0 1\n"):
    path = tmp_path / "vectors.txt"
    path.write_text(text)
    return load_vectors(path)


def test_pretrained_vectors_initialise_known_words_and_count_them(tmp_path, monkeypatch):
    monkeypatch.setenv("ELMO_TASKS_CACHE", str(tmp_path / "cache"))
    vectors = small_vectors(tmp_path)
    vocab = Vocab(["dog", "cat", "bird"])
    matrix, found = pretrained_init(vocab, vectors, WordsConfig(dim=3))
    assert found == 2 and matrix.shape == (5, 3)
    assert torch.equal(matrix[vocab.id("dog")], torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(matrix[vocab.id("cat")], torch.tensor([-1.0, 0.0, 0.5]))
    assert matrix[0].abs().sum() == 0 and matrix[vocab.id("bird")].abs().sum() > 0  # padding zero, bird drawn


def test_vocabulary_adds_every_split_s_words_that_have_a_vector_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setenv("ELMO_TASKS_CACHE", str(tmp_path / "cache"))
    vectors = small_vectors(tmp_path)
    config = WordsConfig(dim=3, min_count=2, pretrained="x", fold_digits=False)
    train = [["Dog", "runs"], ["dog", "runs"], ["bird"]]
    words, _ = token_vocabularies(config, train, [[["Cat", "sleeps", "1996"]]], vectors)
    # train words seen twice, plus train/dev/test words with a vector (lower-cased); never 'sleeps'
    assert words.items == ["<pad>", "<unk>", "dog", "runs", "1996", "cat"]
    folded, _ = token_vocabularies(WordsConfig(dim=3, pretrained="x"), train, [[["1996"]]], vectors)
    assert "0000" not in folded.items and "1996" not in folded.items  # folded digits find no vector


def test_coverage_note_and_frozen_vectors(tmp_path, monkeypatch):
    monkeypatch.setenv("ELMO_TASKS_CACHE", str(tmp_path / "cache"))
    vectors = small_vectors(tmp_path)
    config = WordsConfig(dim=3, pretrained=str(tmp_path / "vectors.txt"), trainable=False)
    words, chars, initial, notes = fit_token_inputs(
        config, [["dog", "owl"]], {"train": [["dog", "owl"]], "dev": [["cat"]]}
    )
    assert notes == [
        f"{vectors.source} covers 50.0 % of train tokens (dev 100.0 %); 2 of 2 vocabulary words start "
        "from a pretrained vector (frozen)"
    ]
    encoder = token_encoder_from_config(config, CharsConfig(filters=0), words, chars, initial)
    assert not encoder.words.weight.requires_grad and torch.equal(encoder.words.weight, initial)


def test_a_width_that_differs_from_the_configured_dim_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ELMO_TASKS_CACHE", str(tmp_path / "cache"))
    small_vectors(tmp_path)
    with pytest.raises(DataError, match="50"):
        fit_token_inputs(WordsConfig(dim=50, pretrained=str(tmp_path / "vectors.txt")), [["dog"]], {"train": [["dog"]]})


def test_char_cnn_ignores_padding_characters():
    torch.manual_seed(0)
    cnn = CharCnn(n_chars=10, char_dim=4, n_filters=6, width=3)
    word = torch.tensor([[[3, 4, 5]]])
    padded = torch.tensor([[[3, 4, 5, 0, 0, 0]]])
    assert torch.allclose(cnn(word), cnn(padded), atol=1e-6)
