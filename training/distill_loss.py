"""The distillation loss (``training.distill``'s ``[train.distill]``): ``(1 - w) * label loss + w * T² *
KL(teacher_T ‖ softmax(student / T))``, or, for a model with a distillation token, the cls output on the
labels and the dist output on the teacher; rows optionally weighted (a stream's onset steps)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.distill import DistillConfig
from training.losses import loss_fn, row_mean


def kd_loss(
    student_logits: torch.Tensor,
    teacher_probs: torch.Tensor,
    temperature: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """``T² * KL(teacher ‖ softmax(student / T))``, mean over rows ``(N, C)`` (weighted by ``weights``)."""
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    p = teacher_probs.float()
    kl = (p * (torch.log(p.clamp_min(1e-12)) - log_q)).sum(-1)
    return temperature**2 * row_mean(kl, weights)


def dist_token_target(teacher_probs: torch.Tensor, dist_target: str) -> torch.Tensor:
    """A dist token's target: the teacher's argmax one-hot (hard; a uniform row stays) or its probs."""
    probs = teacher_probs.float()
    if dist_target == "hard":
        uniform = (probs.amax(-1, keepdim=True) - probs.amin(-1, keepdim=True)) < 1e-6  # "no class"
        return torch.where(uniform, probs, F.one_hot(probs.argmax(-1), probs.shape[-1]).float())
    return probs


def distill_loss(
    logits: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
    labels: torch.Tensor,
    teacher_probs: torch.Tensor,
    cfg: DistillConfig,
    smoothing: float,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The distilled loss and its parts for ``(N, C)`` logits (or a ``(cls, dist)`` pair of them).

    ``labels`` and ``teacher_probs`` are ``(N, C)`` soft targets; ``weights`` ``(N,)`` weigh the rows.
    With a pair, the cls logits learn the labels and the dist logits the teacher (hard: cross-entropy
    with its argmax; soft: ``T² * KL``).
    """
    w = cfg.weight
    if isinstance(logits, tuple):
        cls_logits, dist_logits = logits
        label_part = loss_fn(cls_logits, labels, False, smoothing, weights)
        if cfg.dist_target == "hard":
            hard = dist_token_target(teacher_probs, "hard")
            teacher_part = loss_fn(dist_logits, hard, False, 0.0, weights)
        else:
            teacher_part = kd_loss(dist_logits, teacher_probs, cfg.temperature, weights)
    else:
        label_part = loss_fn(logits, labels, False, smoothing, weights)
        teacher_part = kd_loss(logits, teacher_probs, cfg.temperature, weights)
    total = (1 - w) * label_part + w * teacher_part
    return total, {"label_loss": float(label_part.detach()), "teacher_loss": float(teacher_part.detach())}


def flatten_steps(
    logits: torch.Tensor | tuple[torch.Tensor, torch.Tensor], *targets: torch.Tensor
) -> tuple[torch.Tensor | tuple[torch.Tensor, torch.Tensor], ...]:
    """``(B, S, C)`` logits over a recurrent model's last steps -> ``(B*S, C)``, each clip target repeated."""
    if isinstance(logits, tuple) or logits.ndim == 2:
        return (logits, *targets)
    b, s, c = logits.shape
    repeated = [t.unsqueeze(1).expand(b, s, t.shape[-1]).reshape(b * s, -1) for t in targets]
    return (logits.reshape(b * s, c), *repeated)
