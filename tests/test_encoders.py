"""Task-side token encoders: GloVe-format initialisation and the character CNN."""

import pytest
import torch

from data.errors import DataFormatError
from tasks.encoders import CharCnn, Vocab, read_glove


def test_glove_file_initialises_known_words_and_counts_them(tmp_path):
    glove = tmp_path / "vectors.txt"
    glove.write_text("dog 1.0 2.0 3.0\nunseen 9 9 9\ncat -1 0 0.5\n")
    vocab = Vocab(["dog", "cat", "bird"])
    matrix, found = read_glove(glove, vocab, 3)
    assert found == 2 and matrix.shape == (5, 3)
    assert torch.equal(matrix[vocab.id("dog")], torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(matrix[vocab.id("cat")], torch.tensor([-1.0, 0.0, 0.5]))
    assert matrix[0].abs().sum() == 0  # padding row


def test_glove_line_with_the_wrong_width_names_file_and_line(tmp_path):
    glove = tmp_path / "vectors.txt"
    glove.write_text("dog 1.0 2.0 3.0\ncat 1.0 2.0\n")
    with pytest.raises(DataFormatError, match=r"vectors.txt:2: expected a word and 3 numbers, found 2"):
        read_glove(glove, Vocab(["dog", "cat"]), 3)


def test_char_cnn_ignores_padding_characters():
    torch.manual_seed(0)
    cnn = CharCnn(n_chars=10, char_dim=4, n_filters=6, width=3)
    word = torch.tensor([[[3, 4, 5]]])
    padded = torch.tensor([[[3, 4, 5, 0, 0, 0]]])
    assert torch.allclose(cnn(word), cnn(padded), atol=1e-6)
