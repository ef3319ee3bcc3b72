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


def row_mean(per_row: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The mean of per-row losses ``(N,)``, or their weighted mean (``weights`` ``(N,)``, positive)."""
    if weights is None:
        return per_row.mean()
    weights = weights.to(per_row)
    return (per_row * weights).sum() / weights.sum()


def loss_fn(
    logits: torch.Tensor,
    target: torch.Tensor,
    multi_label: bool,
    smoothing: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy on soft targets (single-label, with label smoothing) or BCE (multi-label), averaged
    over the rows (weighted by ``weights`` ``(N,)`` if given).

    Single-label: a target row summing to less than 1 (the all-zero row of a background example, or a
    clip mixed with one) has its missing mass spread evenly over the classes: "no class" is the uniform
    distribution, the least confident answer a softmax can give.
    """
    logits = logits.float()
    if multi_label:
        if weights is None:
            return F.binary_cross_entropy_with_logits(logits, target)
        return row_mean(F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(1), weights)
    c = logits.shape[1]
    target = target + (1 - target.sum(dim=1, keepdim=True)).clamp(min=0) / c
    target = target * (1 - smoothing) + smoothing / c
    return row_mean(-(target * F.log_softmax(logits, dim=1)).sum(dim=1), weights)


def training_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Training logits: ``(B, C)`` (windowed) or ``(B, S, C)`` over a recurrent model's last steps."""
    last_steps = getattr(model, "last_steps_logits", None)
    return last_steps(x) if callable(last_steps) else model(x)


def sequence_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    multi_label: bool,
    smoothing: float,
    step_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """``loss_fn`` on ``(B, C)`` logits, or its mean over the steps of ``(B, S, C)`` (clip target),
    weighted by ``step_weights`` ``(B, S)`` when given."""
    if logits.ndim == 2:
        return loss_fn(logits, target, multi_label, smoothing)
    b, s, c = logits.shape
    expanded = target.unsqueeze(1).expand(b, s, target.shape[-1]).reshape(b * s, -1)
    weights = None if step_weights is None else step_weights.reshape(b * s).to(logits.device)
    return loss_fn(logits.reshape(b * s, c), expanded, multi_label, smoothing, weights)
