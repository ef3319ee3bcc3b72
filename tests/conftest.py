"""Shared test fixtures: paths to the real data beside the repository."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from support.esc50 import Esc50
from support.paths import ESC50_CSV

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ESC50 = SHARED / "data" / "esc50"
FIXTURES = SHARED / "fixtures"


def esc50_rows() -> list[dict[str, str]]:
    with open(ESC50 / "meta" / "esc50.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def esc50_dir() -> Path:
    if not (ESC50 / "meta" / "esc50.csv").exists():
        pytest.skip("ESC-50 data not found beside the repository (../shared/data/esc50)")
    return ESC50


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.exists():
        pytest.skip("golden fixtures not found beside the repository (../shared/fixtures)")
    return FIXTURES


@pytest.fixture(scope="session")
def esc50() -> Esc50:
    if not ESC50_CSV.exists():
        pytest.skip(f"ESC-50 not found at {ESC50_CSV.parent.parent}")
    return Esc50()
