"""What a training run is told (``TrainConfig``, the ``[train]`` table) and returns (``TrainResult``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audio_core.checks import check_fields, rule
from audio_core.compute import COMPUTES
from training.augment import AugmentConfig
from training.distill import DistillConfig
from training.sequences import SequenceConfig

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    """The ``[train]`` table; each field's bounds and choices sit next to it and are checked on creation."""

    epochs: int = rule(60, gt=0)
    batch_size: int = rule(32, gt=0)
    lr: float = rule(2e-3, gt=0)
    weight_decay: float = rule(0.05, ge=0)
    warmup_epochs: float = rule(3.0, ge=0)
    min_lr_ratio: float = rule(0.01, gt=0, le=1)
    label_smoothing: float = rule(0.1, ge=0, lt=1)
    ema_decay: float = rule(0.995, ge=0, lt=1)
    grad_clip: float = rule(5.0, ge=0)  # 0: no clipping
    # auto: bf16 where the CPU runs it natively (models.bf16), else fp32
    precision: str = rule("auto", choices=PRECISIONS)
    num_threads: int = rule(0, ge=0)  # 0: torch's default
    compute: str = rule("auto", choices=COMPUTES)  # auto: a CUDA device when present (audio_core.compute)
    seed: int = rule(0, ge=0, lt=2**63)  # torch.manual_seed takes 64 bits; negative ones alias others
    eval_every: int = rule(5, ge=0)  # 0: validate after the last epoch only
    # background examples (no-class target) per clip: training.background
    background: float = rule(0.0, ge=0)
    # fine-tuning: the backbone's lr relative to the head's (0: frozen)
    backbone_lr_scale: float = rule(1.0, ge=0)
    layer_decay: float = rule(1.0, gt=0, le=1)  # fine-tuning transformers/Mamba: lr × decay^(depth - block)
    freeze_backbone_epochs: int = rule(0, ge=0)  # fine-tuning: train only the head for this many epochs
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    sequences: SequenceConfig = field(default_factory=SequenceConfig)  # recurrent models: train on streams
    distill: DistillConfig = field(default_factory=DistillConfig)  # teacher targets (training.distill)

    def __post_init__(self) -> None:
        from training.background import check_stream_background

        check_fields(self, "train", ValueError)
        check_stream_background(self.background, self.sequences.enabled)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        aug = AugmentConfig(**data.pop("augment", {}))
        seq = SequenceConfig(**data.pop("sequences", {}))
        distill = DistillConfig(**data.pop("distill", {}))
        return cls(augment=aug, sequences=seq, distill=distill, **data)


def set_threads(num_threads: int) -> int:
    """Apply ``train.num_threads`` to torch (0: torch's default, left as it is), the one rule of training
    and of its timed step (``derive.time_step_s``); returns the thread count before, to restore."""
    import torch

    before = torch.get_num_threads()
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    return before


@dataclass
class TrainResult:
    checkpoint: Path
    history: list[dict[str, float]]
    val_accuracy: float | None
    train_seconds: float
