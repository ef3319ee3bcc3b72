"""Batch augmentations on log-mel fbanks ``(B, T, F)``: time shift, gain, mixup, SpecAugment.

Shift, gain and mixup act on un-normalised log energies (mixup mixes in the power domain, as mixing
waveforms would); SpecAugment masks act on normalised features (masked to 0, the normalised mean).
All randomness comes from the ``torch.Generator`` passed in, so a seed reproduces a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class AugmentConfig:
    time_shift_frac: float = 0.5
    gain_db: float = 6.0
    mixup_alpha: float = 0.5
    mixup_prob: float = 0.8
    freq_mask: int = 16
    time_mask: int = 48
    num_freq_masks: int = 2
    num_time_masks: int = 2


def random_time_shift(x: torch.Tensor, max_frac: float, gen: torch.Generator) -> torch.Tensor:
    """Circularly roll each clip by up to ``max_frac`` of its length in either direction."""
    if max_frac <= 0:
        return x
    b, t, _ = x.shape
    limit = int(t * max_frac)
    shifts = torch.randint(-limit, limit + 1, (b,), generator=gen)
    idx = (torch.arange(t).unsqueeze(0) - shifts.unsqueeze(1)) % t  # (B, T)
    return torch.gather(x, 1, idx.unsqueeze(-1).expand_as(x))


def random_gain(x: torch.Tensor, max_db: float, gen: torch.Generator) -> torch.Tensor:
    """Scale amplitude by ±``max_db``: an additive constant on log power."""
    if max_db <= 0:
        return x
    db = (torch.rand(x.shape[0], generator=gen) * 2 - 1) * max_db
    return x + (db * math.log(10) / 10).view(-1, 1, 1)


def mixup(
    x: torch.Tensor, y: torch.Tensor, alpha: float, prob: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each clip with a partner in the power domain; ``y`` are soft/multi-hot targets ``(B, C)``."""
    if alpha <= 0 or prob <= 0:
        return x, y
    b = x.shape[0]
    lam = _beta(alpha, b, gen)
    lam = torch.maximum(lam, 1 - lam)
    apply = torch.rand(b, generator=gen) < prob
    lam = torch.where(apply, lam, torch.ones_like(lam))
    perm = torch.randperm(b, generator=gen)
    lx = lam.view(-1, 1, 1)
    mixed = torch.logaddexp(x + torch.log(lx), x[perm] + torch.log1p(-lx + 1e-12))
    mixed = torch.where(lx >= 1.0, x, mixed)
    y_mixed = lam.view(-1, 1) * y + (1 - lam.view(-1, 1)) * y[perm]
    return mixed, y_mixed


def _beta(alpha: float, n: int, gen: torch.Generator) -> torch.Tensor:
    """Beta(alpha, alpha) samples from a seeded generator (ratio of gammas via torch._standard_gamma)."""
    a = torch._standard_gamma(torch.full((n,), alpha), generator=gen)
    b = torch._standard_gamma(torch.full((n,), alpha), generator=gen)
    return a / (a + b)


def spec_augment(
    x: torch.Tensor, freq_mask: int, time_mask: int, n_freq: int, n_time: int, gen: torch.Generator
) -> torch.Tensor:
    """Zero ``n_freq`` frequency bands of width < ``freq_mask`` and ``n_time`` time spans < ``time_mask``."""
    b, t, f = x.shape
    keep = torch.ones(b, t, f, dtype=torch.bool)
    for _ in range(n_freq if freq_mask > 0 else 0):
        width = torch.randint(0, freq_mask, (b,), generator=gen)
        start = (torch.rand(b, generator=gen) * (f - width)).long()
        band = torch.arange(f).unsqueeze(0)
        hit = (band >= start.unsqueeze(1)) & (band < (start + width).unsqueeze(1))  # (B, F)
        keep &= ~hit.unsqueeze(1)
    for _ in range(n_time if time_mask > 0 else 0):
        width = torch.randint(0, time_mask, (b,), generator=gen)
        start = (torch.rand(b, generator=gen) * (t - width)).long()
        span = torch.arange(t).unsqueeze(0)
        hit = (span >= start.unsqueeze(1)) & (span < (start + width).unsqueeze(1))  # (B, T)
        keep &= ~hit.unsqueeze(2)
    return x * keep
