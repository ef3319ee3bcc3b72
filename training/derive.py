"""What ``streamd train --data DIR`` derives from the data and the time budget instead of asking.

- the window: the ``WINDOW_QUANTILE`` quantile of the clip durations (it covers most clips whole),
  rounded up to 0.1 s, at least ``MIN_WINDOW_S`` (the models' smallest input), at most ``MAX_WINDOW_S``;
- normalisation statistics: the mean and standard deviation of the training clips' log-mel values
  (their real frames, padding excluded), used as ``(x - mean) / (2 std)``;
- time augmentation scaled to the window: time masks of a tenth of it (ESC-50's 48 of 498 frames),
  time shift as far as the clips leave room (from a tenth to half the window);
- a schedule sized to the data and budget: one training step is timed on the model itself, and the
  epochs are as many as fit in the budget (``MIN_EPOCHS``..``MAX_EPOCHS``), warm-up a tenth of them;
- the model per recipe: ``cnn`` (residual CNN), ``recurrent`` (streaming Mamba), ``ast`` (AST tiny).

``toml_text`` writes the equivalent experiment config, so ``streamd train CONFIG.toml`` repeats it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from training.augment import AugmentConfig

WINDOW_QUANTILE = 0.9
MIN_WINDOW_S = 0.5
MAX_WINDOW_S = 10.0
NUM_MEL_BINS = 64
MIN_EPOCHS, MAX_EPOCHS = 3, 150
RECIPES = ("cnn", "recurrent", "ast")


def derive_window(durations: Iterable[float]) -> float:
    """Window length in seconds covering ``WINDOW_QUANTILE`` of the clips (see the module doc)."""
    values = np.asarray(list(durations), dtype=np.float64)
    if values.size == 0:
        raise ValueError("no clip durations to derive a window from")
    q = float(np.quantile(values, WINDOW_QUANTILE))
    return float(min(MAX_WINDOW_S, max(MIN_WINDOW_S, math.ceil(q * 10 - 1e-6) / 10)))


def window_reason(durations: Any) -> str:
    """Why the derived window is what it is: it covers 90 % of the clips, or a bound decided it."""
    q = float(np.quantile(np.fromiter(durations, dtype=np.float64), WINDOW_QUANTILE))
    if q < MIN_WINDOW_S:
        low = MIN_WINDOW_S
        return f"raised to the shortest window, {low:g} s; 90 % of the clips last {q:.2f} s or less"
    if q > MAX_WINDOW_S:
        high = MAX_WINDOW_S
        return f"capped at the longest derived window, {high:g} s; 90 % of the clips need {q:.1f} s"
    return "90 % of clip durations"


def feature_stats(fbanks: Iterable[np.ndarray]) -> tuple[float, float]:
    """Mean and standard deviation of every value of the given ``(T, F)`` fbanks (float64 sums)."""
    total, total_sq, count = 0.0, 0.0, 0
    for fbank in fbanks:
        values = np.asarray(fbank, dtype=np.float64)
        total += float(values.sum())
        total_sq += float(np.square(values).sum())
        count += values.size
    if count == 0:
        raise ValueError("no feature frames to compute statistics from")
    mean = total / count
    return mean, math.sqrt(max(total_sq / count - mean * mean, 1e-12))


def derive_augment(frames: int, num_mel_bins: int, median_s: float, window_s: float) -> AugmentConfig:
    """Augmentation scaled to a window of ``frames`` frames (see the module doc)."""
    room = 0.5 if median_s >= window_s else min(0.5, max(0.1, 1.0 - median_s / window_s))
    return AugmentConfig(
        time_shift_frac=round(room, 2),
        gain_db=6.0,
        mixup_alpha=0.5,
        mixup_prob=0.3,
        freq_mask=max(2, round(num_mel_bins / 8)),
        time_mask=max(2, round(frames / 10)),
        num_freq_masks=2,
        num_time_masks=2,
    )


def recipe_model(recipe: str, frames: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(arch, model config, train settings) of a recipe for windows of ``frames`` frames."""
    if recipe == "cnn":
        channels = [32, 64, 128] if frames <= 300 else [32, 64, 128, 256]
        config = {"channels": channels, "blocks_per_stage": 1, "stem_stride": 2, "dropout": 0.3}
        return "resnet_cnn", config, {"batch_size": 32, "lr": 0.002}
    if recipe == "recurrent":
        config = {"d_model": 128, "n_layers": 4, "clip_steps": max(1, frames // 32), "dropout": 0.1}
        return "streaming_mamba", config, {"batch_size": 16, "lr": 0.001}
    if recipe == "ast":
        config = {"size": "tiny", "fstride": 10, "tstride": 10, "dropout": 0.0}
        return "ast", config, {"batch_size": 24, "lr": 0.0005}
    raise ValueError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")


def time_step_s(
    model: torch.nn.Module,
    batch: int,
    frames: int,
    bins: int,
    steps: int = 2,
    device: torch.device | None = None,
    precision: str = "fp32",
    num_threads: int = 0,
) -> float:
    """Seconds one training step (forward, backward, AdamW) takes on ``device`` (the model's; the CPU by
    default) in ``precision`` (``auto`` resolved for that device, as training resolves it) on
    ``num_threads`` torch threads (``train.num_threads``, as training sets them; 0: torch's default; the
    count before is restored), timed after one warm-up step."""
    from models.bf16 import bf16_autocast, resolve_auto
    from training.losses import training_logits
    from training.train_config import set_threads

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, frames, bins, device=device)
    kind = x.device.type
    bf16 = resolve_auto(precision, kind) == "bf16"
    sync = torch.cuda.synchronize if device is not None and device.type == "cuda" else (lambda: None)
    elapsed = 0.0
    before = set_threads(num_threads)
    try:
        for i in range(steps + 1):
            t0 = time.perf_counter()
            with bf16_autocast(kind, enabled=bf16):
                loss = training_logits(model, x).float().logsumexp(dim=-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sync()  # a GPU's work is queued: count it done
            if i:
                elapsed += time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)
    return elapsed / steps


def epochs_that_fit(step_s: float, examples: int, batch: int, budget_s: float) -> int:
    """Epochs that fit in ``budget_s`` at ``step_s`` per step (10 % kept for evaluation and saving)."""
    per_epoch = max(1, examples // batch) * step_s
    return max(0, math.floor(0.9 * budget_s / max(per_epoch, 1e-9)))


def derive_epochs(step_s: float, examples: int, batch: int, budget_s: float) -> int:
    """``epochs_that_fit``, kept within ``MIN_EPOCHS``..``MAX_EPOCHS``."""
    return int(min(MAX_EPOCHS, max(MIN_EPOCHS, epochs_that_fit(step_s, examples, batch, budget_s))))


def clamp_note(fit: int, epochs: int) -> str:
    """What the budget's epoch count became, where ``derive_epochs`` kept it within its bounds ("" else)."""
    if fit < epochs:
        return f"; {fit} would fit, raised to the minimum of {epochs}"
    if fit > epochs:
        return f"; {fit} would fit, capped at {epochs}"
    return ""


def warmup_epochs(epochs: int) -> float:
    """A tenth of the epochs, between half an epoch and three."""
    return float(min(3.0, max(0.5, round(epochs / 10, 1))))


def augment_dict(aug: AugmentConfig) -> dict[str, Any]:
    return asdict(aug)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def toml_text(doc: dict[str, Any], notes: dict[str, str] | None = None, header: str = "") -> str:
    """A nested dict of tables (scalars and lists of scalars) as TOML; ``notes["table.key"]`` comments."""
    notes = notes or {}
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]

    def table(name: str, values: dict[str, Any]) -> None:
        scalars = {k: v for k, v in values.items() if not isinstance(v, dict)}
        if scalars or not values:
            lines.extend(["", f"[{name}]"])
            for key, value in scalars.items():
                note = notes.get(f"{name}.{key}")
                text = f"{key} = {_toml_value(value)}"
                lines.append(f"{text:<28}# {note}" if note else text)
        for key, value in values.items():
            if isinstance(value, dict):
                table(f"{name}.{key}", value)

    for name, values in doc.items():
        table(name, values)
    return "\n".join(lines).lstrip("\n") + "\n"
