"""Fixtures shared by the tests; the helpers they use live in tests/helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import write_random_model


@pytest.fixture
def tiny_model(tmp_path: Path) -> tuple[Path, Path]:
    return write_random_model(tmp_path / "tiny")
