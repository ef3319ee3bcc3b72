"""Class scores of a trained model on in-memory fbanks (through ``audio_core.scoring``) and top-1 accuracy."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from audio_core.compute import device_of
from audio_core.scoring import scores
from models.common import ModelInfo


def predict_scores(
    model: nn.Module, x: np.ndarray, info: ModelInfo, batch_size: int = 64, precision: str = "fp32"
) -> np.ndarray:
    """Class scores (softmax or sigmoid) for un-normalised fbanks ``(N, T, F)``."""
    model.eval()
    device = device_of(model)
    out = [
        scores(model, info, torch.from_numpy(x[i : i + batch_size]).to(device), precision=precision)
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(out).numpy()


def accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    if y.ndim == 2:  # multi-label: top-1 is one of the true labels
        return float(np.mean(y[np.arange(len(y)), scores.argmax(1)] > 0))
    return float(np.mean(scores.argmax(1) == y))
