"""Errors for ELMo files: they name the file, the dataset or key, what was expected and what was found."""
from __future__ import annotations


class ElmoFileError(ValueError):
    """An options JSON or an HDF5 weight file is missing, unreadable or disagrees with itself."""


class ModelNotAvailableError(RuntimeError):
    """A named model cannot be fetched (offline) and no local copy exists."""
