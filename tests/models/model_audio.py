"""Real ESC-50 audio beside the repository (``../shared``), as fbanks, for the model tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from support.paths import ESC50, ESC50_CSV, clip_paths, esc50_rows  # noqa: F401 (re-exported)

from audio_core.fbank import compute_fbank
from models.common import DATASET_STATS, FeatureConfig, Normalization


def load_wave(path: Path) -> np.ndarray:
    wave, rate = sf.read(str(path), dtype="float32")
    assert rate == 16000 and wave.ndim == 1
    return wave - wave.mean()


def fbank_of(wave: np.ndarray, features: FeatureConfig | None = None) -> torch.Tensor:
    """Un-normalised Kaldi fbank ``(T, num_mel_bins)``: 128 bins unless ``features`` says otherwise."""
    return compute_fbank(wave, features or FeatureConfig())


def esc50_normalization(frames: int = 498) -> Normalization:
    mean, std, _ = DATASET_STATS["esc50"]
    return Normalization(mean, std, frames)
