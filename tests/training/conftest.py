"""Shared fixtures for the training tests: the real ESC-50 data that sits beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest
from esc50_subset import ESC50, ESC50_CSV


@pytest.fixture(scope="session")
def esc50_root() -> Path:
    if not ESC50_CSV.exists():
        pytest.skip(f"ESC-50 data not found at {ESC50}")
    return ESC50
