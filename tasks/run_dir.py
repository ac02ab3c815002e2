"""A trained run (config, vocabularies, best checkpoint) loaded back from its run directory or
from a model package (``elmo-tasks package``), and the one prediction path that ``evaluate``,
``predict`` and the Python API share."""

from __future__ import annotations

import io
import json
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from data.tokenize import TextSentence

from .base import Head, Task
from .config import BackboneConfig, rename_legacy_keys
from .errors import PackageError, RunDirError, brief
from .features import LiveFeatures, check_run_backbone, load_backbone
from .records import PredictedSentence
from .registry import build_task, task_config_from_tree

RUN_FILES = ("config.yaml", "vocab.json", "best.pt")


@dataclass
class TrainedRun:
    """A task with its vocabularies, its head (eval mode) and the backbone (``None`` without ELMo)."""

    task: Task
    model: Head
    bilm: object | None

    def predict_split(self, split) -> list:
        """The predictions for a split the task has read; the backbone runs live on its sentences
        (its type cache keeps each distinct word's char-CNN vector)."""
        self.task.tensorise(split)
        if self.bilm is not None:
            self.task.attach_features(split, LiveFeatures(self.bilm, split.tokens))
        return self.task.predict(self.model, split)

    def predict_file(self, path: Path, input_format: str = "auto") -> tuple[object, list, str]:
        """``(split, predictions, format read)`` for a file (formats: :meth:`Task.read_input`)."""
        split, used = self.task.read_input(Path(path), input_format)
        return split, self.predict_split(split), used

    def predict_sentences(self, sentences: list[TextSentence]) -> list[PredictedSentence]:
        """One record per sentence (:mod:`tasks.records`) for sentences of text or token lists."""
        split = self.task.unlabelled(sentences)
        return self.task.records(split, self.predict_split(split))

    def evaluate_file(self, path: Path) -> tuple[object, list, dict]:
        """``(split, predictions, scores)`` for a labelled file; the scores hold ``report``."""
        split, predictions, _ = self.predict_file(path, "labelled")
        return split, predictions, self.task.score(split, predictions)


def load_run(path: str | Path, precision: str = "fp32") -> TrainedRun:
    """The run in ``path``: a run directory, or a model package written by ``elmo-tasks package``
    (see :mod:`tasks.package`). ``precision`` picks the backbone's numerics at prediction time
    (the head was trained on fp32 features). Errors name the file, or ``ARCHIVE#MEMBER``, that is
    missing or damaged."""
    path = Path(path)
    if path.is_dir():
        return build_run(read_run_files(path), lambda name: path / name, precision)
    if not path.exists():
        raise RunDirError(
            path,
            "not found (expected a run directory written by 'elmo-tasks train' or a model package written by "
            "'elmo-tasks package')",
        )
    if not path.is_file():
        raise RunDirError(path, "neither a run directory nor a model package (a regular file)")
    from .package import read_package

    with read_package(path) as package:
        trained = build_run(
            package.files, package.where, precision, lambda backbone: package.load_backbone(backbone, precision)
        )
        if trained.task.name != package.manifest["task"]:
            raise PackageError(
                package.where("config.yaml"),
                f"is a config of task {trained.task.name!r}, the manifest says {package.manifest['task']!r}",
            )
        trained.task.config.backbone = package.backbone_config(trained.task.config.backbone)
    return trained


def read_run_files(run_dir: str | Path) -> dict[str, bytes]:
    """The bytes of a run directory's :data:`RUN_FILES`; a missing one is named."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(run_dir, "not a directory (expected a run directory written by 'elmo-tasks train')")
    for name in RUN_FILES:
        if not (run_dir / name).is_file():
            raise RunDirError(run_dir / name, "missing: is this a run directory written by 'elmo-tasks train'?")
    return {name: (run_dir / name).read_bytes() for name in RUN_FILES}


def build_run(
    files: dict[str, bytes],
    where: Callable[[str], str | Path],
    precision: str = "fp32",
    backbone: Callable[[BackboneConfig], object] | None = None,
) -> TrainedRun:
    """A run from the bytes of its :data:`RUN_FILES`; ``where(name)`` names a file in messages;
    ``backbone(config.backbone)`` loads the biLM (default: as the config says, after checking the
    files have the sha256 the run recorded: :func:`tasks.features.check_run_backbone`)."""
    tree = _read(where("config.yaml"), files["config.yaml"], yaml.safe_load)
    if not isinstance(tree, dict):
        raise RunDirError(where("config.yaml"), "is not a config (a YAML mapping)")
    tree = rename_legacy_keys(tree)
    # data.limit cut the training run's splits (smoke runs); a file given to evaluate/predict is read whole.
    if isinstance(tree.get("data"), dict):
        tree["data"]["limit"] = None
    task = build_task(task_config_from_tree(tree, where("config.yaml")))
    vocab = _read(where("vocab.json"), files["vocab.json"], json.loads)
    try:
        task.restore_vocab(vocab)
    except KeyError as err:
        raise RunDirError(where("vocab.json"), f"does not hold this task's vocabularies (missing {err})") from None
    except (TypeError, ValueError, AttributeError, IndexError) as err:
        raise RunDirError(
            where("vocab.json"), f"does not hold this task's vocabularies ({type(err).__name__}: {err})"
        ) from None
    bilm = None
    if task.uses_elmo():
        if backbone is None:  # a run directory: the files its config names must be those it was trained with
            config_path = Path(where("config.yaml"))
            remedy = (
                f"Set backbone.options and backbone.weights in {config_path} to the files the run was trained "
                "with, or train the run again"
            )
            check_run_backbone(config_path.parent, task.config.backbone, task.config.backbone, remedy)
        bilm = (
            backbone(task.config.backbone)
            if backbone is not None
            else load_backbone(task.config.backbone, precision=precision)
        )
    model = task.build_model(bilm.num_layers if bilm else None, bilm.output_dim if bilm else None)
    try:
        with warnings.catch_warnings():  # damaged bytes can read as an odd pickle protocol, which torch warns about
            warnings.simplefilter("ignore")
            saved = torch.load(io.BytesIO(files["best.pt"]), map_location="cpu", weights_only=True)
    except (
        RuntimeError,
        ValueError,
        EOFError,
        OSError,
        pickle.UnpicklingError,
        AttributeError,
        KeyError,  # torch's weights-only unpickler on random bytes (about 7 % of 2 KiB draws)
        IndexError,
    ) as err:
        raise RunDirError(
            where("best.pt"),
            f"cannot be read as a checkpoint, it is truncated or damaged ({brief(err)})",
        ) from None
    try:
        model.load_state_dict(saved["model"])
    except (RuntimeError, KeyError, TypeError, IndexError, ValueError) as err:
        raise RunDirError(
            where("best.pt"),
            f"is damaged or belongs to another run ({type(err).__name__}: {str(err).splitlines()[0][:200]})",
        ) from None
    model.eval()
    return TrainedRun(task, model, bilm)


def _read(where: str | Path, data: bytes, parse):
    try:
        return parse(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as err:
        mark = getattr(err, "problem_mark", None)
        line = getattr(err, "lineno", None) or (mark.line + 1 if mark is not None else None)
        where_in = f" at line {line}" if line else ""
        raise RunDirError(where, f"is damaged{where_in} ({type(err).__name__}); was it edited by hand?") from None
