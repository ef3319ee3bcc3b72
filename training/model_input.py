"""What a model's input can be: the rules of the ``[features]`` and ``[normalization]`` tables, and one
forward pass of an empty window through the configured model.

So a window or feature setting that the fbank or the model cannot take is one line naming the key when the
config is checked, not a traceback after the features were computed. The rules sit next to the fields
(``audio_core.checks.rule``) of sections that extend ``FeatureConfig`` and ``Normalization`` (their defaults
are those classes'); the checked values are returned as those plain classes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from audio_core.checks import check_fields, rule
from audio_core.fbank import frame_window
from models.common import FeatureConfig, Normalization
from models.metadata_check import MAX_NORM_MEAN, MAX_NORM_STD, MAX_TARGET_FRAMES
from models.registry import build_model, config_class, config_to_dict, make_config

FILLED_FROM_DATA = ("num_classes", "num_mel_bins", "target_frames")


@dataclass(frozen=True)
class FeatureSection(FeatureConfig):
    """The ``[features]`` table with the bounds of the Kaldi fbank: more than 3 mel bins, a frame of at
    least two samples, a window type it knows, a band inside 0 Hz..Nyquist."""

    sample_rate: int = rule(FeatureConfig.sample_rate, gt=0)
    num_mel_bins: int = rule(FeatureConfig.num_mel_bins, gt=3)
    frame_length_ms: float = rule(FeatureConfig.frame_length_ms, gt=0)
    frame_shift_ms: float = rule(FeatureConfig.frame_shift_ms, gt=0)
    preemphasis: float = rule(FeatureConfig.preemphasis, ge=0, le=1)
    low_freq: float = rule(FeatureConfig.low_freq, ge=0)

    def __post_init__(self) -> None:
        check_fields(self, "features", ValueError)
        at = f"at features.sample_rate {self.sample_rate} Hz"
        if self.frame_length < 2:
            raise ValueError(f"features.frame_length_ms must hold 2 samples {at}, got {self.frame_length_ms}")
        if self.frame_shift < 1:
            raise ValueError(f"features.frame_shift_ms must hold a sample {at}, got {self.frame_shift_ms}")
        try:
            frame_window(self.window_type, self.frame_length)
        except ValueError as exc:
            raise ValueError(f"features.window_type: {exc}") from None
        nyquist = self.sample_rate / 2
        high = self.high_freq if self.high_freq > 0 else nyquist + self.high_freq
        if not self.low_freq < high <= nyquist:
            raise ValueError(
                f"features.low_freq..high_freq must be a band within 0..{nyquist:g} Hz (a high_freq <= 0 "
                f"counts down from {nyquist:g}), got {self.low_freq:g}..{high:g} Hz"
            )


@dataclass(frozen=True)
class NormalizationSection(Normalization):
    """The ``[normalization]`` table: a mean and a positive spread within the bounds a checkpoint takes
    (``models.metadata_check``: a value it would refuse is refused here, before any training), and a
    window of at least one frame."""

    mean: float = rule(Normalization.mean, ge=-MAX_NORM_MEAN, le=MAX_NORM_MEAN)
    std: float = rule(Normalization.std, gt=0, le=MAX_NORM_STD)
    target_frames: int = rule(Normalization.target_frames, gt=0, le=MAX_TARGET_FRAMES)  # 60 s

    def __post_init__(self) -> None:
        check_fields(self, "normalization", ValueError)


def checked_features(values: dict[str, Any]) -> FeatureConfig:
    """``[features]`` values (types checked) checked by ``FeatureSection``, as a ``FeatureConfig``."""
    return FeatureConfig(**asdict(FeatureSection(**values)))


def checked_normalization(values: dict[str, Any]) -> Normalization:
    """``[normalization]`` values (types checked) checked by ``NormalizationSection``."""
    return Normalization(**asdict(NormalizationSection(**values)))


def filled_config(
    arch: str,
    model_config: dict[str, Any],
    num_classes: int | None,
    features: FeatureConfig,
    normalization: Normalization,
) -> dict[str, Any]:
    """The arch's full config: ``model_config`` plus the sizes from the data where the config has them
    (``TypeError`` or ``ValueError`` when the arch's config refuses a value, or when a size given in
    ``model_config`` contradicts the data's; ``num_classes`` None: not known yet, 2 stands in)."""
    known = {f.name for f in fields(config_class(arch))}
    derived = {
        "num_classes": (num_classes or 2, "the data's labels"),
        "num_mel_bins": (features.num_mel_bins, "features.num_mel_bins"),
        "target_frames": (normalization.target_frames, "normalization.target_frames"),
    }
    values = dict(model_config)
    for key in FILLED_FROM_DATA:
        value, source = derived[key]
        if key not in known:
            continue
        if key not in values:
            values[key] = value
        elif values[key] != value and (key != "num_classes" or num_classes is not None):
            raise ValueError(
                f"{key} = {values[key]!r} contradicts {source} ({value}): leave it out, it comes from there"
            )
    return config_to_dict(make_config(arch, values))


def check_model_input(
    arch: str, model_config: dict[str, Any], features: FeatureConfig, normalization: Normalization
) -> None:
    """``ValueError`` naming the keys unless the model takes a window of ``target_frames`` frames of
    ``num_mel_bins`` bins: one forward pass of zeros (eval mode, the global random state left as it was)."""
    try:
        config = filled_config(arch, model_config, None, features, normalization)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model.config: {exc}") from None
    frames, bins = normalization.target_frames, features.num_mel_bins
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        try:
            model = build_model(arch, config).eval()
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise ValueError(f"model.config: the {arch} model cannot be built ({_first_line(exc)})") from None
        try:
            model(torch.zeros(1, frames, bins))
        except (RuntimeError, ValueError, IndexError) as exc:
            reason = _first_line(exc)
            raise ValueError(
                f"normalization.target_frames = {frames}, features.num_mel_bins = {bins}: the {arch} model "
                f"cannot take windows of that size ({reason})"
            ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
