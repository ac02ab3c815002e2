"""Trained models from Python, flair-style::

    from tasks import load_model

    model = load_model("runs/ner_conll2003-seed1")  # a run directory, or a package from `elmo-tasks package`
    for sentence in model.predict("Alan Turing worked at Bletchley Park. He was born in London."):
        for entity in sentence.entities:
            print(entity.label, entity.text, entity.start, entity.end)
    scores = model.evaluate("eng.testb")  # what `elmo-tasks evaluate` prints, as a dict

:meth:`TaskModel.predict` returns the objects of :mod:`tasks.records` (dataclasses), the same
ones ``elmo-tasks predict --output X.jsonl`` writes as JSON: one code path
(:meth:`tasks.base.Task.records`). It takes

* a string: raw text, split into sentences and tokenised by :func:`data.tokenize.split_text`
  -> a list of sentences, offsets into the string;
* a list of strings -> one list of sentences per string, offsets into that string (a blank string
  gives an empty list);
* a list of token lists (pre-tokenised sentences) -> one sentence per token list, offsets into
  the text of its tokens joined by single spaces (see :mod:`tasks.records`).

All sentences of one call go through the model together, length-sorted in batches, the backbone
running once per batch and encoding each distinct word's characters once (its type cache). The
same input gives the same output, call after call. A call without a single token, an empty token
or a value of another type is a :class:`~tasks.errors.UsageError` saying which.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from data.errors import DataUsageError
from data.tokenize import TextSentence, join_tokens, split_text

from .errors import UsageError
from .records import PredictedSentence
from .run_dir import TrainedRun, load_run


class TaskModel:
    """A trained run, loaded once, for :meth:`predict` and :meth:`evaluate`."""

    def __init__(self, run: TrainedRun, source: str | Path = ""):
        self.run = run
        self.source = str(source)

    @property
    def task(self) -> str:
        """The task's name (``ner``, ``sst5``, ``wsd`` ...)."""
        return self.run.task.name

    @property
    def labels(self) -> list[str]:
        """The labels the model predicts (NER tags, sentiment labels; WSD: its sense keys)."""
        task = self.run.task
        return list(getattr(task, "labels", None) or getattr(task, "senses", [])[1:])

    def __repr__(self) -> str:
        return f"TaskModel(task={self.task!r}, source={self.source!r})"

    def predict(
        self, texts: str | Sequence[str] | Sequence[Sequence[str]]
    ) -> list[PredictedSentence] | list[list[PredictedSentence]]:
        """Sentences with the task's answers; see the module docstring for what ``texts`` may be."""
        if isinstance(texts, str):
            sentences = split_text(texts)
            if not sentences:
                raise UsageError("predict: nothing to predict (the text is empty or only white space)")
            return self.run.predict_sentences(sentences)
        if not isinstance(texts, Sequence) or isinstance(texts, bytes):
            raise UsageError(
                f"predict: expected a string, a list of strings or a list of token lists, got {type(texts).__name__}"
            )
        if len(texts) == 0:
            raise UsageError("predict: nothing to predict (an empty list)")
        if all(isinstance(t, str) for t in texts):
            return self._predict_texts(list(texts))
        if all(isinstance(t, Sequence) and not isinstance(t, (str, bytes)) for t in texts):
            try:
                _, sentences = join_tokens(texts)
            except DataUsageError as err:
                raise UsageError(f"predict: {err}") from None
            return self.run.predict_sentences(sentences)
        kinds = sorted({type(t).__name__ for t in texts})
        raise UsageError(
            f"predict: expected a list of strings or a list of token lists, got a list of {' and '.join(kinds)}"
        )

    def _predict_texts(self, texts: list[str]) -> list[list[PredictedSentence]]:
        per_text: list[list[TextSentence]] = [split_text(text) for text in texts]
        every = [s for sentences in per_text for s in sentences]
        if not every:
            raise UsageError(f"predict: nothing to predict (all {len(texts)} texts are empty or only white space)")
        records = self.run.predict_sentences(every)  # one batched pass over all of them
        grouped, start = [], 0
        for sentences in per_text:
            grouped.append(records[start : start + len(sentences)])
            start += len(sentences)
        return grouped

    def predict_file(self, path: str | Path, input_format: str = "auto") -> list[PredictedSentence]:
        """The sentences of a file (formats as ``elmo-tasks predict --format``: ``auto``, ``text``,
        ``tokenized``, ``conll``/``labelled``), offsets into its text; what ``predict --output
        X.jsonl`` writes. The way to run a WSD model, which needs the framework's XML."""
        from .cli.common import check_input_exists

        check_input_exists(Path(path), "predict_file")
        split, predictions, _ = self.run.predict_file(Path(path), input_format)
        return self.run.task.records(split, predictions)

    def evaluate(self, path: str | Path) -> dict:
        """The scores on a labelled file, as ``elmo-tasks evaluate`` computes them (``report`` holds
        the text it prints)."""
        from .cli.common import check_input_exists

        check_input_exists(Path(path), "evaluate")
        return self.run.evaluate_file(Path(path))[2]


def load_model(path: str | Path, precision: str = "fp32") -> TaskModel:
    """A trained run from its directory (or a model package); ``precision`` as for ``evaluate``."""
    return TaskModel(load_run(path, precision=precision), path)


__all__ = ["TaskModel", "load_model"]
