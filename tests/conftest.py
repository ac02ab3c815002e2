"""Shared test helpers: where the shared data lives, and tiny random ELMo models on disk."""
from __future__ import annotations

from pathlib import Path

import pytest

from elmo_core.random_model import TINY_OPTIONS, write_random_model  # noqa: F401  (tests import them from here)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = SHARED_DATA / "elmo-fixtures"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (shared data lives beside the repository; CI has it)")
    return path


@pytest.fixture
def tiny_model(tmp_path: Path) -> tuple[Path, Path]:
    return write_random_model(tmp_path / "tiny")
