"""The trainer's malloc set-up (elmo_core.pretrain.keep_freed_memory): glibc only, and never over
an explicit choice (``ELMO_TASKS_KEEP_FREED_MEMORY=0`` or glibc's own variables)."""

from __future__ import annotations

import ctypes
import sys

import pytest

from elmo_core.pretrain import KEEP_FREED_MEMORY_ENV, keep_freed_memory


def glibc() -> bool:
    return sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")


@pytest.mark.parametrize("value", ["0", "no", "false", "off"])
def test_switched_off(monkeypatch, value):
    monkeypatch.setenv(KEEP_FREED_MEMORY_ENV, value)
    assert keep_freed_memory() is False


@pytest.mark.parametrize(
    "name, value", [("MALLOC_TRIM_THRESHOLD_", "131072"), ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")]
)
def test_glibc_settings_of_the_environment_are_kept(monkeypatch, name, value):
    monkeypatch.delenv(KEEP_FREED_MEMORY_ENV, raising=False)
    monkeypatch.setenv(name, value)
    assert keep_freed_memory() is False


def test_applied_on_glibc(monkeypatch):
    monkeypatch.delenv(KEEP_FREED_MEMORY_ENV, raising=False)
    for name in (
        "MALLOC_MMAP_THRESHOLD_",
        "MALLOC_TRIM_THRESHOLD_",
        "MALLOC_TOP_PAD_",
        "MALLOC_MMAP_MAX_",
        "GLIBC_TUNABLES",
    ):
        monkeypatch.delenv(name, raising=False)
    assert keep_freed_memory() is glibc()  # the trainer sets it anyway: the same process-wide setting
