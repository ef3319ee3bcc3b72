"""Plain offline references for what the daemon publishes: window levels and scores of known audio."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from audio_core.fbank import compute_fbank
from streamd.model_loading import load_model
from streamd.model_runner import ModelRunner

SILENCE_DBFS = -120.0


def shifted(audio: np.ndarray, offset_samples: int, length: int) -> np.ndarray:
    """``audio`` as a stream that starts ``offset_samples`` late (negative: early), cut or zero-padded."""
    out = np.zeros(length, dtype=np.float32)
    src0 = max(0, -offset_samples)
    dst0 = max(0, offset_samples)
    n = max(0, min(len(audio) - src0, length - dst0))
    out[dst0 : dst0 + n] = audio[src0 : src0 + n]
    return out


def level_dbfs(samples: np.ndarray) -> float:
    """Mean-square level in dB relative to full scale (what predictions carry as ``level_dbfs``)."""
    mean_square = float(np.mean(np.square(samples, dtype=np.float64))) if len(samples) else 0.0
    return max(SILENCE_DBFS, 10.0 * math.log10(mean_square)) if mean_square > 0 else SILENCE_DBFS


def window_levels(stream: np.ndarray, spans: list[tuple[float, float]], rate: int) -> np.ndarray:
    return np.array([level_dbfs(stream[round(a * rate) : round(b * rate)]) for a, b in spans])


def best_offset(
    audio: np.ndarray,
    spans: list[tuple[float, float]],
    levels: np.ndarray,
    rate: int,
    search_s: tuple[float, float] = (-0.5, 1.0),
    step_s: float = 0.005,
) -> tuple[float, float]:
    """The delay (s) of ``audio`` in a stream whose windows ``spans`` had ``levels``; the worst dB error."""
    length = round(max(b for _, b in spans) * rate) + 1
    best = (0.0, math.inf)
    for d in np.arange(search_s[0], search_s[1] + step_s / 2, step_s):
        stream = shifted(audio, round(d * rate), length)
        err = float(np.max(np.abs(window_levels(stream, spans, rate) - levels)))
        if err < best[1]:
            best = (float(d), err)
    return best


class ReferenceScorer:
    """Scores windows of known audio with the checkpoint, the plain way: fbank of the window, one call."""

    def __init__(self, checkpoint: Path) -> None:
        self.loaded = load_model(checkpoint, compute="cpu")
        self.runner = ModelRunner(self.loaded)
        self.rate = self.loaded.info.features.sample_rate

    @property
    def labels(self) -> list[str]:
        return list(self.loaded.info.labels)

    def scores(self, stream: np.ndarray, t_start: float, t_end: float) -> np.ndarray:
        """Class scores ``(C,)`` of ``stream[t_start:t_end]`` (seconds at the model rate)."""
        window = stream[round(t_start * self.rate) : round(t_end * self.rate)]
        fbank = torch.as_tensor(compute_fbank(window, self.loaded.info.features))
        return self.runner.score_windows([fbank])[0].numpy()
