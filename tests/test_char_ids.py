import pytest
import torch

from elmo_core.char_ids import MAX_CHARS, batch_to_ids, word_to_char_ids


def test_ascii_word_has_markers_bytes_and_padding_shifted_by_one():
    ids = word_to_char_ids("ab")
    assert ids[:4] == [259, 98, 99, 260]  # BOW(258)+1, 'a'(97)+1, 'b'(98)+1, EOW(259)+1
    assert ids[4:] == [261] * (MAX_CHARS - 4)  # PAD(260)+1
    assert len(ids) == MAX_CHARS


def test_non_ascii_word_is_encoded_as_utf8_bytes():
    ids = word_to_char_ids("né")  # é = 0xC3 0xA9
    assert ids[:5] == [259, ord("n") + 1, 0xC3 + 1, 0xA9 + 1, 260]


def test_long_word_is_truncated_to_48_bytes_and_keeps_end_of_word():
    ids = word_to_char_ids("x" * 60)
    assert ids[1:49] == [ord("x") + 1] * 48
    assert ids[49] == 260  # EOW+1 in the last slot
    assert word_to_char_ids("x" * 48) == ids


def test_multibyte_char_cut_at_the_byte_limit():
    ids = word_to_char_ids("é" * 30)  # 60 bytes, cut at 48 bytes = 24 characters exactly
    assert ids[1:49] == [0xC3 + 1, 0xA9 + 1] * 24


def test_sentence_markers():
    assert word_to_char_ids("<S>")[:4] == [259, 257, 260, 261]
    assert word_to_char_ids("</S>")[:4] == [259, 258, 260, 261]


def test_batch_shape_and_zero_padding():
    ids = batch_to_ids([["a", "b", "c"], ["d"]])
    assert ids.shape == (2, 3, 50) and ids.dtype == torch.long
    assert ids[1, 1:].abs().sum() == 0
    assert torch.equal(ids[1, 0], torch.tensor(word_to_char_ids("d")))


def test_empty_sentence_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        batch_to_ids([["a"], []])
