"""The learning-rate schedule: linear warm-up, then cosine decay."""

from __future__ import annotations

import math


def lr_at(step: int, total: int, warmup: int, base: float, min_ratio: float) -> float:
    """Linear warm-up to ``base`` over ``warmup`` steps, then cosine decay to ``base * min_ratio``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
