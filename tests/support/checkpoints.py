"""Small seeded random-weight checkpoints, saved the way training saves them (``models.checkpoint``)."""

from __future__ import annotations

from pathlib import Path

import torch

from models import FeatureConfig, ModelInfo, build_model
from models.checkpoint import save_checkpoint
from models.common import Normalization

NUM_MEL_BINS = 64
SMALL_RESNET = {"num_classes": 50, "channels": [8, 16, 32, 64], "num_mel_bins": NUM_MEL_BINS}


def small_resnet_checkpoint(
    path: Path, labels: list[str], seed: int = 0, head_gain: float = 1.0, target_frames: int = 498
) -> Path:
    """A residual CNN over 64 mel bins with random (seeded) weights and ``labels``.

    ``head_gain`` scales the output layer: random weights give nearly uniform scores, a large gain makes
    the scores depend visibly on the audio (for comparing what two paths made of the same sound).
    ``target_frames``: the window it says it was trained on (498 frames: 5 s; 98: 1 s).
    """
    config = dict(SMALL_RESNET, num_classes=len(labels))
    torch.manual_seed(seed)
    model = build_model("resnet_cnn", config).eval()
    with torch.no_grad():
        model.head.weight.mul_(head_gain)
    info = ModelInfo(
        arch="resnet_cnn",
        config=config,
        labels=list(labels),
        features=FeatureConfig(num_mel_bins=NUM_MEL_BINS),
        normalization=Normalization(target_frames=target_frames),
    )
    return save_checkpoint(path, model, info)
