"""Test helper: small class folders of real ESC-50 excerpts, as a user's first ``--data`` folder looks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_core.audio_file import read_audio
from tests.support.paths import ESC50, ESC50_CSV, esc50_rows

CLASSES = ("dog", "rooster", "crying_baby")
SR = 16000


def loudest(wave: np.ndarray, seconds: float) -> np.ndarray:
    """The ``seconds`` stretch of ``wave`` with the most energy."""
    n = round(seconds * SR)
    energy = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
    start = int(np.argmax(energy[n:] - energy[:-n]))
    return wave[start : start + n]


def write_class_folders(root: Path, per_class: int = 3, seconds: float = 0.5) -> Path:
    """``root/<class>/<clip>.wav``: the loudest ``seconds`` of the first ``per_class`` ESC-50 clips of each
    of ``CLASSES`` (16 kHz mono); the test is skipped without the ESC-50 data beside the repository."""
    if not ESC50_CSV.exists():
        pytest.skip(f"ESC-50 data not found at {ESC50}")
    for label in CLASSES:
        rows = [r for r in esc50_rows() if r["category"] == label][:per_class]
        (root / label).mkdir(parents=True, exist_ok=True)
        for row in rows:
            wave = read_audio(ESC50 / "audio" / row["filename"], SR)
            sf.write(root / label / (Path(row["filename"]).stem + ".wav"), loudest(wave, seconds), SR)
    return root


def folders_experiment_toml(
    data: Path, out: Path, num_folds: int, val_folds: list[int], extra: str = ""
) -> str:
    """A TOML experiment (mode single) training a tiny CNN for one epoch on the class folders ``data``
    (reader ``folders``), into ``out``; ``extra`` lines join its ``[experiment]`` table."""
    return f"""
[experiment]
output_dir = "{out}"
mode = "single"
{extra}
[data]
reader = "folders"
root = "{data}"
num_folds = {num_folds}
val_folds = {val_folds}
[normalization]
target_frames = 48
[model]
arch = "resnet_cnn"
[model.config]
channels = [8, 16]
[train]
epochs = 1
batch_size = 4
precision = "fp32"
eval_every = 0
[train.augment]
mixup_prob = 0.0
"""
