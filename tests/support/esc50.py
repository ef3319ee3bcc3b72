"""The real ESC-50 clips beside the repository, as the tests use them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

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
