"""Sentence-classification metrics (SST-5 / SST-2): accuracy, macro-F1 and a confusion matrix.

Scores come from scikit-learn, imported on first use (with pandas), since every ``elmo-tasks``
command, ``--help`` included, would otherwise pay for importing them. The confusion matrix is a
DataFrame with gold labels as rows and predictions as columns, printable as a markdown table and
plottable to a PNG. Plotting uses matplotlib's Agg canvas directly, so it works headless and leaves
pyplot's global backend alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class ClassificationReport:
    accuracy: float
    macro_f1: float
    per_class: pd.DataFrame  # rows: label names; columns: precision, recall, f1, support
    confusion: pd.DataFrame  # rows: gold label names; columns: predicted label names

    def to_markdown(self) -> str:
        return "\n\n".join(
            [
                f"accuracy: {100 * self.accuracy:.2f}  macro-F1: {100 * self.macro_f1:.2f}",
                dataframe_to_markdown(self.per_class, float_format="{:.3f}"),
                dataframe_to_markdown(self.confusion),
            ]
        )


def classification_report(
    gold: Sequence[int],
    pred: Sequence[int],
    labels: Sequence[int],
    label_names: Sequence[str] | None = None,
) -> ClassificationReport:
    """Accuracy, macro-F1 over ``labels`` (absent classes count as F1 0), per-class scores, confusion."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    if not len(gold):
        raise ValueError("no examples to score")
    labels = list(labels)
    names = [str(name) for name in (label_names if label_names is not None else labels)]
    if len(names) != len(labels):
        raise ValueError(f"{len(labels)} labels but {len(names)} label names")
    import pandas as pd
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    per_class = pd.DataFrame({"precision": precision, "recall": recall, "f1": f1, "support": support}, index=names)
    matrix = confusion_matrix(gold, pred, labels=labels)
    confusion = pd.DataFrame(
        matrix,
        index=pd.Index(names, name="gold"),
        columns=pd.Index(names, name="predicted"),
    )
    return ClassificationReport(
        accuracy=float(accuracy_score(gold, pred)),
        macro_f1=float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
        per_class=per_class,
        confusion=confusion,
    )


def dataframe_to_markdown(frame: pd.DataFrame, float_format: str = "{}") -> str:
    """A GitHub markdown table (pandas' own ``to_markdown`` needs the optional ``tabulate``)."""
    corner = " / ".join(name for name in (frame.index.name, frame.columns.name) if name) or ""

    def cell(value) -> str:
        return float_format.format(value) if isinstance(value, (float, np.floating)) else str(value)

    header = "| " + " | ".join([corner, *map(str, frame.columns)]) + " |"
    rule = "|" + "---|" * (len(frame.columns) + 1)
    # itertuples keeps each column's dtype (to_numpy would turn integer counts into floats).
    rows = ["| " + " | ".join([str(index), *map(cell, row)]) + " |" for index, *row in frame.itertuples(name=None)]
    return "\n".join([header, rule, *rows])


def plot_confusion_matrix(matrix: pd.DataFrame | np.ndarray, labels: Sequence[str], path_png: str | Path) -> Path:
    """Draw the counts as a heat map (gold rows, predicted columns) and save it as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(matrix)
    if counts.shape != (len(labels), len(labels)):
        raise ValueError(f"matrix of shape {counts.shape} does not fit {len(labels)} labels")
    size = 1.2 + 0.9 * len(labels)
    figure = Figure(figsize=(size + 1.5, size))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes)
    ticks = range(len(labels))
    axes.set_xticks(ticks, labels=list(labels), rotation=45, ha="right")
    axes.set_yticks(ticks, labels=list(labels))
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    _annotate_counts(axes, counts)
    figure.tight_layout()
    path = Path(path_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(figure, path, dpi=100)
    return path


def save_png(figure, path: Path, dpi: int) -> None:
    """A matplotlib figure as a PNG, written atomically like every other output."""
    import io

    from elmo_core.io import atomic_write_bytes

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())


def _annotate_counts(axes, counts: np.ndarray) -> None:
    # White text on the dark half of the colour map keeps every count readable.
    threshold = counts.max() / 2 if counts.size else 0
    for row in range(counts.shape[0]):
        for column in range(counts.shape[1]):
            value = counts[row, column]
            colour = "white" if value > threshold else "black"
            axes.text(column, row, f"{value:g}", ha="center", va="center", color=colour)
