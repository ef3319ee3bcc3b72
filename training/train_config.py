"""What a training run is told (``TrainConfig``, the ``[train]`` table) and returns (``TrainResult``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.augment import AugmentConfig
from training.distill import DistillConfig
from training.sequences import SequenceConfig


@dataclass
class TrainConfig:
    epochs: int = 60
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 3.0
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.1
    ema_decay: float = 0.995
    grad_clip: float = 5.0
    precision: str = "auto"  # auto: bf16 where the CPU runs it natively (models.bf16), else fp32
    num_threads: int = 0
    seed: int = 0
    eval_every: int = 5
    background: float = 0.0  # background examples (no-class target) per clip: training.background
    backbone_lr_scale: float = 1.0  # fine-tuning: the backbone's lr relative to the head's
    layer_decay: float = 1.0  # fine-tuning transformers/Mamba: lr × decay^(depth - block)
    freeze_backbone_epochs: int = 0  # fine-tuning: train only the head for this many epochs
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    sequences: SequenceConfig = field(default_factory=SequenceConfig)  # recurrent models: train on streams
    distill: DistillConfig = field(default_factory=DistillConfig)  # teacher targets (training.distill)

    def __post_init__(self) -> None:
        from training.background import check_stream_background

        check_stream_background(self.background, self.sequences.enabled)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        aug = AugmentConfig(**data.pop("augment", {}))
        seq = SequenceConfig(**data.pop("sequences", {}))
        distill = DistillConfig(**data.pop("distill", {}))
        return cls(augment=aug, sequences=seq, distill=distill, **data)


@dataclass
class TrainResult:
    checkpoint: Path
    history: list[dict[str, float]]
    val_accuracy: float | None
    train_seconds: float
