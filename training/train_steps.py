"""One training step: a batch of clips (augmented, optionally distilled) or of streams of clips for a
recurrent model, forward and loss. Returns ``Step`` (loss, logits, targets, loss parts)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from audio_core.compute import device_of
from models.bf16 import bf16_autocast
from models.common import FeatureConfig, ModelInfo
from training.augment import (
    AugmentConfig,
    clip_gain_db,
    mix_clips,
    random_freq_shift,
    random_gain,
    random_time_shift,
    random_time_stretch,
    spec_augment,
)
from training.distill import Teacher
from training.distill_loss import distill_loss, flatten_steps
from training.losses import loss_fn, sequence_loss, soft_targets, training_logits
from training.sequences import SequenceBuilder, StreamMixing, noise_bank
from training.short_clips import align_short_rows
from training.train_config import TrainConfig


def _mix(
    x: torch.Tensor,
    y: torch.Tensor,
    aug: AugmentConfig,
    gen: torch.Generator,
    info: ModelInfo,
    unshifted: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stretch, shifts, gain and mixing (mixup or between-class) on un-normalised fbanks; ``y`` mixes
    alike. Stretch and frequency shift are off by default and draw nothing from ``gen`` when off. Rows
    where ``unshifted`` is True are not shifted in time."""
    x = random_time_stretch(x, aug.time_stretch, gen)
    x = random_freq_shift(x, aug.freq_shift, gen)
    x = random_time_shift(x, aug.time_shift_frac, gen, unshifted)
    x = random_gain(x, aug.gain_db, gen)
    return mix_clips(x, y, aug, gen, info.features, len(info.labels))


def _mask(x: torch.Tensor, aug: AugmentConfig, gen: torch.Generator, info: ModelInfo) -> torch.Tensor:
    x = info.normalization.apply(x)
    return spec_augment(x, aug.freq_mask, aug.time_mask, aug.num_freq_masks, aug.num_time_masks, gen)


def _on_device(model: nn.Module, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Batches are drawn and augmented on the CPU (one random stream whatever the device), then moved
    to the model's device."""
    device = device_of(model)
    return tuple(t.to(device, non_blocking=True) for t in tensors)


def _autocast(batch: torch.Tensor, cfg: TrainConfig):
    return bf16_autocast(batch.device.type, enabled=cfg.precision == "bf16")


Step = tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, float]]  # loss, logits, targets, loss parts


def clip_step(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    cfg: TrainConfig,
    gen: torch.Generator,
    info: ModelInfo,
    teacher: Teacher | None = None,
    idx: np.ndarray | None = None,
    real_frames: np.ndarray | None = None,
) -> Step:
    """Forward a batch of clips (a recurrent model: over its last steps, averaged for the statistics).
    ``real_frames``: each row's frames of audio before its padding; a recurrent model's short rows are
    trained on their own last steps (``training.short_clips``)."""
    yb = soft_targets(torch.from_numpy(y), len(info.labels), info.multi_label)
    if teacher is not None:
        return _distilled_clip_step(model, torch.from_numpy(x), yb, cfg, gen, info, teacher, idx)
    xt, weights, unshifted = torch.from_numpy(x), None, None
    if column := int(getattr(model, "column_frames", 0)):
        xt, weights, unshifted = align_short_rows(xt, real_frames, column, int(model.cfg.clip_steps))
    xm, yb = _mix(xt, yb, cfg.augment, gen, info, unshifted)
    xb, yb = _on_device(model, _mask(xm, cfg.augment, gen, info), yb)
    with _autocast(xb, cfg):
        logits = training_logits(model, xb)
    loss = sequence_loss(logits, yb, info.multi_label, cfg.label_smoothing, weights)
    return loss, logits.mean(dim=1) if logits.ndim == 3 else logits, yb, {}


def _distilled_clip_step(
    model: nn.Module,
    x: torch.Tensor,
    yb: torch.Tensor,
    cfg: TrainConfig,
    gen: torch.Generator,
    info: ModelInfo,
    teacher: Teacher,
    idx: np.ndarray | None,
) -> Step:
    """A clip batch against labels and teacher: cached probabilities ride along the labels through the
    mixing (same partner, same ratio); online, the teacher scores the mixed input before the masks.
    A background example (``train.background``: no class) has the uniform distribution as its teacher
    target too, whatever the teachers say of the noise (they never learned "no class"): mixed, the
    teacher target is blended with it by the example's share of background."""
    c = yb.shape[1]
    background = (yb.sum(dim=1, keepdim=True) == 0).float()  # rides along the mixing: its share
    cached = [] if teacher.online else [_cached_rows(teacher, torch.as_tensor(idx))]
    xm, yb = _mix(x, torch.cat([yb, *cached, background], dim=1), cfg.augment, gen, info)
    share = yb[:, -1:]
    # cached rows of background are already uniform and were mixed like the labels: blend online only
    tb = teacher.probs_of(xm) * (1 - share) + share / c if teacher.online else yb[:, c:-1]
    xb, yb, tb = _on_device(model, _mask(xm, cfg.augment, gen, info), yb[:, :c], tb)
    tokens = getattr(model, "forward_tokens", None)
    with _autocast(xb, cfg):
        logits = tokens(xb) if callable(tokens) else training_logits(model, xb)
    flat, labels, probs = flatten_steps(logits, yb, tb)
    loss, parts = distill_loss(flat, labels, probs, cfg.distill, cfg.label_smoothing)
    if isinstance(logits, tuple):
        logits = (logits[0] + logits[1]) / 2
    return loss, logits.mean(dim=1) if logits.ndim == 3 else logits, yb, parts


def _cached_rows(teacher: Teacher, idx: torch.Tensor) -> torch.Tensor:
    """Cached teacher targets of training examples ``idx``; those past the clips (background examples,
    added after them) get the uniform distribution, "no class"."""
    n, c = teacher.clip_probs.shape
    rows = teacher.clip_probs[idx.clamp(max=n - 1)]
    return torch.where((idx >= n).unsqueeze(1), torch.full_like(rows, 1.0 / c), rows)


def stream_step(
    model: nn.Module,
    streams: SequenceBuilder,
    clips: Iterator[int],
    cfg: TrainConfig,
    gen: torch.Generator,
    info: ModelInfo,
    teacher: Teacher | None = None,
) -> Step | None:
    """Forward a batch of streams; the loss is over the steps that have a target (None if none has).
    With a teacher, a step over a clip also learns that clip's teacher probabilities. Steps over the
    background between clips have no target, or (``background_steps = "no_class"``) learn "nothing": an
    all-zero label row (``loss_fn`` makes it uniform) and a uniform teacher row."""
    xb, yb, mask, step_weights = streams.batch(cfg.batch_size, clips, gen)
    if not bool(mask.any()):
        return None
    xb = _augment_stream(xb, cfg.augment, gen, info, streams.frames)
    xb, yb, mask = _on_device(model, xb, yb, mask)
    # each step's weight (onset weighting); without it every weight is 1: the plain mean, no copy
    weights = _on_device(model, step_weights)[0] if cfg.sequences.weighs_onsets else None
    with _autocast(xb, cfg):
        logits = model.forward_steps(xb)
    if cfg.sequences.background_steps == "no_class":
        background = ~mask.reshape(-1)
        logits, yb = logits.reshape(-1, logits.shape[-1]), yb.reshape(-1, yb.shape[-1]).clone()
        weights = None if weights is None else weights.reshape(-1)
    else:
        background = None
        logits, yb = logits[mask], yb[mask]  # steps over background have no target
        weights = None if weights is None else weights[mask]
    if teacher is not None:  # targets carry [labels | teacher probabilities] per step
        c = logits.shape[1]
        if background is not None:
            yb[background, c:] = 1.0 / c
        loss, parts = distill_loss(logits, yb[:, :c], yb[:, c:], cfg.distill, cfg.label_smoothing, weights)
        return loss, logits, yb[:, :c], parts
    loss = loss_fn(logits, yb, info.multi_label, cfg.label_smoothing, weights)
    return loss, logits, yb, {}


def sequence_builder(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    cfg: TrainConfig,
    info: ModelInfo,
    teacher: Teacher | None = None,
) -> SequenceBuilder:
    column = getattr(model, "column_frames", None)
    if column is None or not callable(getattr(model, "forward_steps", None)):
        raise ValueError("train.sequences is for recurrent models (one result per column)")
    features = info.features
    targets = soft_targets(torch.from_numpy(train[1]), len(info.labels), info.multi_label)
    if teacher is not None:  # each clip's teacher probabilities ride along its labels onto its steps
        targets = torch.cat([targets, teacher.clip_probs], dim=1)
    frame_rate = features.sample_rate / features.frame_shift
    noise = noise_bank(features, seed=cfg.seed, kinds=tuple(cfg.sequences.background_kinds))
    labels = targets[:, : len(info.labels)]
    mixing = stream_mixing(train[0], labels, cfg.sequences.mix_prob, cfg.augment, features)
    prefixes = None if teacher is None else teacher.prefix_probs
    return SequenceBuilder(
        train[0], targets, cfg.sequences, column, frame_rate, noise, cfg.augment.gain_db, mixing, prefixes
    )


def stream_mixing(
    x: np.ndarray, labels: torch.Tensor, prob: float, aug: AugmentConfig, features: FeatureConfig
) -> StreamMixing | None:
    """Mixing of a share ``prob`` of the clips placed in streams (``[train.sequences] mix_prob``) by
    ``[train.augment]``'s ``mixing`` and ``mixup_alpha``, or None when it mixes nothing."""
    if prob <= 0 or (aug.mixing == "mixup" and aug.mixup_alpha <= 0):
        return None
    gains = None
    if aug.mixing == "bc":  # each clip's loudest A-weighted frame, in slices to bound the memory
        gains = torch.cat(
            [clip_gain_db(torch.from_numpy(x[i : i + 256]), features) for i in range(0, len(x), 256)]
        )
    classes = labels.argmax(1).numpy()
    return StreamMixing(aug.mixing, prob, aug.mixup_alpha, classes, gains)


def _augment_stream(
    x: torch.Tensor, aug: AugmentConfig, gen: torch.Generator, info: ModelInfo, frames: int
) -> torch.Tensor:
    """Streams: clips got their gain and place when built; normalise, then SpecAugment as many time
    masks per window length as clips get."""
    x = info.normalization.apply(x)
    per_window = max(1, round(frames / info.normalization.target_frames))
    return spec_augment(
        x, aug.freq_mask, aug.time_mask, aug.num_freq_masks, aug.num_time_masks * per_window, gen
    )
