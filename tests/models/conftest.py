"""Fixtures for the model tests: real ESC-50 audio beside the repository, as normalised fbanks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from model_audio import ESC50, ESC50_CSV, clip_paths, esc50_normalization, fbank_of, load_wave


@pytest.fixture(scope="session")
def esc50_root() -> Path:
    if not ESC50_CSV.exists():
        pytest.skip("ESC-50 data not found beside the repository (../shared/data/esc50)")
    return ESC50


@pytest.fixture(scope="session")
def real_windows(esc50_root: Path) -> torch.Tensor:
    """Four real 5-s clips of different classes as normalised fbanks ``(4, 498, 128)``."""
    banks = [fbank_of(load_wave(p)) for p in clip_paths(4)]
    return esc50_normalization().apply(torch.stack(banks))


@pytest.fixture(scope="session")
def real_minute(esc50_root: Path) -> torch.Tensor:
    """60 s of real audio (12 clips of 12 classes back to back), normalised fbank ``(1, T, 128)``."""
    wave = np.concatenate([load_wave(p) for p in clip_paths(12, fold=2)])
    assert len(wave) == 60 * 16000
    return esc50_normalization().apply(fbank_of(wave)).unsqueeze(0)
