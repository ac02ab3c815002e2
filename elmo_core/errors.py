"""Errors of the ELMo backbone: they name the file, the dataset or key, what was expected and what
was found.

Every error the backbone raises for bad user input is a :class:`BackboneError` (a ``ValueError``):

* :class:`ElmoFileError`: an options JSON, HDF5 weight file, sentence file, corpus, vocabulary,
  checkpoint or feature store is missing, unreadable or disagrees with itself;
* :class:`ModelNotAvailableError`: a named model is unknown or cannot be fetched;
* :class:`BackboneUsageError`: an argument is not valid (unknown precision, device, mix mode, an
  empty sentence, ...);
* :class:`OutputPathError` (an :class:`ElmoFileError`): an output file or directory cannot be
  written (a directory where a file is expected, a missing or read-only directory), found before
  any work starts;
* :class:`DirectoryBusyError` (an :class:`ElmoFileError`): another process holds the lock of a run
  directory, pretraining directory or feature-store shard, and we were asked not to wait;
* :class:`ProcessGroupError`: under torchrun, another rank died, stopped or stopped answering (a
  collective failed or timed out), so this rank stops too.
"""

from __future__ import annotations


class BackboneError(ValueError):
    """Root of every error the backbone raises for bad user input (files, names or arguments)."""


class ElmoFileError(BackboneError):
    """An options JSON or an HDF5 weight file is missing, unreadable or disagrees with itself."""


class ModelNotAvailableError(BackboneError):
    """A named model is unknown, or cannot be fetched (offline) and no local copy exists."""


class BackboneUsageError(BackboneError):
    """An argument is not valid: an unknown precision, device or mix mode, an empty sentence, ..."""


class OutputPathError(ElmoFileError):
    """An output file or directory cannot be written: a directory where a file is expected, a file
    where a directory is expected, a missing or read-only directory. Found before any work starts."""


class DirectoryBusyError(ElmoFileError):
    """Another process holds a directory's lock (its PID is named) and we were asked not to wait."""


class ProcessGroupError(BackboneError):
    """Under torchrun, the other ranks cannot be reached: one died (its connection closed), failed
    before training started, or did not answer within the process group's timeout. Names this rank
    and, where it can be told, the one that failed."""
