"""Shared vocabulary of every streamd model: feature settings, normalisation and the two model interfaces.

A windowed model maps a batch of normalised fbank windows ``(B, T, F)`` to logits ``(B, C)``.
A recurrent model additionally exposes explicit state: ``init_state(batch)`` and
``step(column, state) -> (logits, state)``, where ``column`` is one patch column of frames.
"""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class FeatureConfig:
    """Kaldi-compatible log-mel filterbank settings (torchaudio.compliance.kaldi.fbank semantics)."""

    sample_rate: int = 16000
    num_mel_bins: int = 128
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window_type: str = "hanning"
    preemphasis: float = 0.97
    remove_dc_offset: bool = True
    low_freq: float = 20.0
    high_freq: float = 0.0
    energy_floor_eps: bool = True

    @property
    def frame_length(self) -> int:
        """Samples per frame."""
        return int(self.sample_rate * self.frame_length_ms * 0.001)

    @property
    def frame_shift(self) -> int:
        """Samples between frame starts."""
        return int(self.sample_rate * self.frame_shift_ms * 0.001)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced from ``num_samples`` samples with snip_edges=True."""
        if num_samples < self.frame_length:
            return 0
        return 1 + (num_samples - self.frame_length) // self.frame_shift

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        return cls(**_known(cls, data))


@dataclass(frozen=True)
class Normalization:
    """``(x - mean) / (2 * std)`` as in AST; ``target_frames``: the window length it was trained on."""

    mean: float = -6.6268077
    std: float = 5.358466
    target_frames: int = 498

    def apply(self, fbank: torch.Tensor) -> torch.Tensor:
        return (fbank - self.mean) / (2.0 * self.std)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalization:
        return cls(**_known(cls, data))


# Published dataset statistics (AST recipes): (mean, std, target_length).
# the one label of an initialisation whose head was never trained (``streamd convert`` of an image model):
# ``streamd train --init`` takes it, the classifying commands refuse it
UNTRAINED_LABEL = "untrained"

DATASET_STATS: dict[str, tuple[float, float, int]] = {
    "audioset": (-4.2677393, 4.5689974, 1024),
    "esc50": (-6.6268077, 5.358466, 512),
    "speechcommands": (-6.845978, 5.5654526, 128),
    "vggsound": (-5.0767093, 4.4533687, 1024),
}


@dataclass
class ModelInfo:
    """Everything a checkpoint carries besides weights."""

    arch: str
    config: dict[str, Any]
    labels: list[str]
    features: FeatureConfig = field(default_factory=FeatureConfig)
    normalization: Normalization = field(default_factory=Normalization)
    multi_label: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "config": self.config,
            "labels": list(self.labels),
            "features": self.features.to_dict(),
            "normalization": self.normalization.to_dict(),
            "multi_label": self.multi_label,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        return cls(
            arch=str(data["arch"]),
            config=dict(data.get("config", {})),
            labels=[label_name(str(x)) for x in data["labels"]],  # an older NFD label is today's NFC one
            features=FeatureConfig.from_dict(data.get("features", {})),
            normalization=Normalization.from_dict(data.get("normalization", {})),
            multi_label=bool(data.get("multi_label", False)),
            extra=dict(data.get("extra", {})),
        )


class WindowedClassifier(nn.Module):
    """Base class: ``forward(fbank (B, T, F) normalised) -> logits (B, C)``."""

    recurrent: bool = False

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class RecurrentClassifier(WindowedClassifier):
    """Base class for causal models that also stream with explicit state.

    ``column_frames`` frames make one step; ``step`` takes ``(B, column_frames, F)`` and returns
    ``(logits (B, C), new_state)``; ``forward`` over a whole sequence returns the per-step logits
    ``(B, S, C)`` via ``forward_steps`` and the last step's logits via ``forward``.
    """

    recurrent: bool = True
    column_frames: int = 16

    def init_state(self, batch: int, device: torch.device | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - interface

    def step(
        self, column: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError  # pragma: no cover - interface

    def forward_steps(self, fbank: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - interface

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        return self.forward_steps(fbank)[:, -1]


def is_recurrent(model: nn.Module) -> bool:
    """Whether ``model`` runs column by column with state (a ``RecurrentClassifier``, or a wrapper that
    says so through its ``recurrent`` attribute)."""
    return bool(getattr(model, "recurrent", False))


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """Keep only keys that are fields of dataclass ``cls``; reject unknown ones loudly."""
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    return dict(data)


def label_name(text: str) -> str:
    """A class label as streamd spells it: Unicode NFC. A name read from data in another normalisation
    (macOS writes folder names decomposed, NFD) and a checkpoint's label are then the same class."""
    return unicodedata.normalize("NFC", text)
