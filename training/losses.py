"""Training targets and losses: one-hot / no-class rows, soft cross-entropy with label smoothing or BCE,
and the loss over a recurrent model's last steps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NO_CLASS = -1  # class index of a background example: its target row is all zeros


def soft_targets(y: torch.Tensor, num_classes: int, multi_label: bool) -> torch.Tensor:
    """One-hot rows (``NO_CLASS``: an all-zero row), or the multi-hot targets as they are."""
    if multi_label:
        return y.float()
    return F.one_hot(y.clamp(min=0), num_classes).float() * (y >= 0).unsqueeze(1)


def loss_fn(logits: torch.Tensor, target: torch.Tensor, multi_label: bool, smoothing: float) -> torch.Tensor:
    """Cross-entropy on soft targets (single-label, with label smoothing) or BCE (multi-label).

    Single-label: a target row summing to less than 1 (the all-zero row of a background example, or a
    clip mixed with one) has its missing mass spread evenly over the classes: "no class" is the uniform
    distribution, the least confident answer a softmax can give.
    """
    logits = logits.float()
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, target)
    c = logits.shape[1]
    target = target + (1 - target.sum(dim=1, keepdim=True)).clamp(min=0) / c
    target = target * (1 - smoothing) + smoothing / c
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def training_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Training logits: ``(B, C)`` (windowed) or ``(B, S, C)`` over a recurrent model's last steps."""
    last_steps = getattr(model, "last_steps_logits", None)
    return last_steps(x) if callable(last_steps) else model(x)


def sequence_loss(
    logits: torch.Tensor, target: torch.Tensor, multi_label: bool, smoothing: float
) -> torch.Tensor:
    """``loss_fn`` on ``(B, C)`` logits, or its mean over the steps of ``(B, S, C)`` (clip target)."""
    if logits.ndim == 2:
        return loss_fn(logits, target, multi_label, smoothing)
    b, s, c = logits.shape
    expanded = target.unsqueeze(1).expand(b, s, target.shape[-1]).reshape(b * s, -1)
    return loss_fn(logits.reshape(b * s, c), expanded, multi_label, smoothing)
