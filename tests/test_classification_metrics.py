"""Classification report (accuracy, macro-F1, confusion matrix) and its PNG plot."""

from __future__ import annotations

import pytest

from tasks.metrics.classification import classification_report, plot_confusion_matrix

GOLD = [0, 0, 1, 1, 2, 2, 2]
PRED = [0, 1, 1, 1, 2, 0, 2]
NAMES = ["neg", "neu", "pos"]


def test_accuracy_macro_f1_and_per_class_scores():
    report = classification_report(GOLD, PRED, labels=[0, 1, 2], label_names=NAMES)
    assert report.accuracy == pytest.approx(5 / 7)
    # Per class F1: neg P=1/2 R=1/2 -> 0.5; neu P=2/3 R=1 -> 0.8; pos P=1 R=2/3 -> 0.8.
    assert report.per_class["f1"].tolist() == pytest.approx([0.5, 0.8, 0.8])
    assert report.per_class["support"].tolist() == [2, 2, 3]
    assert report.macro_f1 == pytest.approx((0.5 + 0.8 + 0.8) / 3)


def test_confusion_matrix_has_gold_rows_and_predicted_columns():
    confusion = classification_report(GOLD, PRED, labels=[0, 1, 2], label_names=NAMES).confusion
    assert list(confusion.index) == NAMES and list(confusion.columns) == NAMES
    assert confusion.to_numpy().tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert confusion.loc["pos", "neg"] == 1  # one positive sentence predicted negative


def test_class_never_seen_counts_as_zero_f1():
    report = classification_report([0, 0, 1], [0, 0, 1], labels=[0, 1, 2])
    assert report.accuracy == 1.0
    assert report.macro_f1 == pytest.approx(2 / 3)
    assert report.confusion.shape == (3, 3)


def test_markdown_contains_scores_and_matrix():
    text = classification_report(GOLD, PRED, labels=[0, 1, 2], label_names=NAMES).to_markdown()
    assert "accuracy: 71.43" in text
    assert "| gold / predicted | neg | neu | pos |" in text
    assert "| pos | 1 | 0 | 2 |" in text
    assert "| neu | 0.667 | 1.000 | 0.800 | 2 |" in text


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="3 gold labels but 2 predictions"):
        classification_report([0, 1, 1], [0, 1], labels=[0, 1])


def test_plot_writes_a_png(tmp_path):
    report = classification_report(GOLD, PRED, labels=[0, 1, 2], label_names=NAMES)
    path = plot_confusion_matrix(report.confusion, NAMES, tmp_path / "plots" / "confusion.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


def test_plot_rejects_matrix_of_wrong_size(tmp_path):
    with pytest.raises(ValueError, match="does not fit 2 labels"):
        plot_confusion_matrix([[1, 2, 3]], ["a", "b"], tmp_path / "x.png")
