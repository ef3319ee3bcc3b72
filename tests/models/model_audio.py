"""Real ESC-50 audio beside the repository (``../shared``), as fbanks, for the model tests."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audio_core.fbank import compute_fbank
from models.common import DATASET_STATS, FeatureConfig, Normalization

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
ESC50 = SHARED / "data" / "esc50"
ESC50_CSV = ESC50 / "meta" / "esc50.csv"


def esc50_rows() -> list[dict[str, str]]:
    with ESC50_CSV.open(newline="") as f:
        return list(csv.DictReader(f))


def clip_paths(n: int, fold: int = 1) -> list[Path]:
    """The first clip (by file name) of each of the first ``n`` classes in one fold."""
    first: dict[int, str] = {}
    for r in sorted(esc50_rows(), key=lambda r: r["filename"]):
        if r["fold"] == str(fold):
            first.setdefault(int(r["target"]), r["filename"])
    return [ESC50 / "audio" / first[target] for target in sorted(first)[:n]]


def load_wave(path: Path) -> np.ndarray:
    wave, rate = sf.read(str(path), dtype="float32")
    assert rate == 16000 and wave.ndim == 1
    return wave - wave.mean()


def fbank_of(wave: np.ndarray) -> torch.Tensor:
    """Un-normalised Kaldi fbank ``(T, 128)``."""
    return compute_fbank(wave, FeatureConfig())


def esc50_normalization(frames: int = 498) -> Normalization:
    mean, std, _ = DATASET_STATS["esc50"]
    return Normalization(mean, std, frames)
