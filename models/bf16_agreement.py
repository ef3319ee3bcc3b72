"""How often a model's bf16 answer is its fp32 answer, measured on real windows and kept in the checkpoint.

``--precision auto`` reads ``extra.bf16_agreement`` (``models.precision``) and keeps fp32 below 99 %.
Windowed models are compared window by window; recurrent models step by step (every column's answer).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from models.bf16 import bf16_autocast
from models.checkpoint import load_checkpoint, update_extra
from models.common import is_recurrent
from models.inference import prepare_for_inference


@torch.no_grad()
def bf16_agreement(model: nn.Module, windows: torch.Tensor, served: nn.Module | None = None) -> float:
    """Top-1 agreement of bf16 autocast with fp32 on normalised fbanks ``windows (B, T, F)``: ``model`` in
    fp32 against ``served`` (default: ``model`` itself; the daemon's inference form) in bf16."""
    served = model if served is None else served
    num_classes = model.num_classes
    reference = _run(model, windows).float().reshape(-1, num_classes)
    with bf16_autocast(windows.device.type):
        low = _run(served, windows).float().reshape(-1, num_classes)
    return float((low.argmax(-1) == reference.argmax(-1)).float().mean())


def _run(model: nn.Module, windows: torch.Tensor) -> torch.Tensor:
    return model.forward_steps(windows) if is_recurrent(model) else model(windows)


def record_bf16_agreement(path: str | Path, fbanks: list[torch.Tensor]) -> float:
    """Measure on un-normalised fbanks ``[(T, F)]`` of equal length and write it into ``path``: the plain
    model in fp32 against the form the daemon serves in bf16 (``models.inference``)."""
    model, info = load_checkpoint(path)
    windows = info.normalization.apply(torch.stack(fbanks))
    served = prepare_for_inference(copy.deepcopy(model), "bf16")
    agreement = bf16_agreement(model, windows, served)
    update_extra(path, {"bf16_agreement": round(agreement, 4), "bf16_agreement_windows": len(fbanks)})
    return agreement
