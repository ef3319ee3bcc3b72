"""The real ESC-50 clips beside the repository, as the tests use them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audio_core.fbank import compute_fbank
from models.common import FeatureConfig
from support.paths import esc10_clips, esc50_labels


class Esc50:
    """The real ESC-50 clips beside the repository: labels, deterministic clip picks, reading."""

    def __init__(self) -> None:
        self.labels = esc50_labels()

    @staticmethod
    def clips(n: int, fold: int = 1) -> list[Path]:
        """``n`` ESC-10 clips of one fold, in file name order."""
        return esc10_clips(n, fold)

    @staticmethod
    def read_mono(path: Path) -> np.ndarray:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        assert rate == 16000
        return data.mean(axis=1)

    def fbank_windows(
        self, clips: list[Path], features: FeatureConfig, starts: tuple[int, ...], count: int
    ) -> list[torch.Tensor]:
        """The first ``count`` 2-s fbank windows of ``clips``, cut at ``starts`` (samples) of each clip."""
        out: list[torch.Tensor] = []
        for path in clips:
            wave = self.read_mono(path)
            out += [compute_fbank(wave[s : s + 32000], features) for s in starts]
        return out[:count]
