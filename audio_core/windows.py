"""From model-rate samples to classifier inputs: sliding windows or recurrent columns of fbank frames.

Frames are computed once, as samples arrive (``StreamingFbank``), and kept by absolute frame index; a
window is a slice of them. Frame ``f`` covers samples ``[f*shift, f*shift + length)``.

Windowed models: window ``k`` covers samples ``[k*hop, k*hop + window)`` (``t_start = k*hop_s``,
``t_end = t_start + window_s``) and holds the frames fully inside it. A plan may carry a lead (the daemon
staggers live streams, ``WindowPlan.staggered``): every window starts ``lead`` earlier, window ``k`` at
``k*hop - lead``, and the first one, which starts before the stream, holds ``lead`` of silence before
the stream's first sample (its ``t_start`` is 0, its ``lead_s`` says how much silence). The hop must be a
whole number of frame shifts, so those frames are exactly ``compute_fbank`` of the window's samples
(silence included). At the end of a stream
a file shorter than one window is padded with silence to one window, and a last window aligned to the end
(start rounded down to the frame grid) classifies the tail.

Recurrent models: column ``k`` is frames ``[k*c, (k+1)*c)``; a stream shorter than one column is
completed with frames of silence to one, and in a longer one the frames after the last whole column are
not classified (less than one step).

The front ends that turn samples into these inputs live in ``audio_core.front_end``.
Pure module: no threads, sockets or devices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from models.common import FeatureConfig, ModelInfo


@dataclass
class Window:
    """One classifier input: frames ``(T, F)`` (raw log-mel, not normalised) and where it sits in time."""

    index: int
    t_start: float
    t_end: float
    features: torch.Tensor  # (T, num_mel_bins)
    end_sample: int  # one past the last real (not padded) model-rate sample it depends on
    level_dbfs: float
    padded_s: float = 0.0  # seconds of silence appended at the end of a short stream
    lead_s: float = 0.0  # seconds of silence before the stream's start (a staggered stream's first window)
    tail: bool = False  # the extra end-aligned window of a flush
    stretch: int = 0  # the stream's device outages before this window (streamd.gaps)


@dataclass(frozen=True)
class WindowPlan:
    """Sliding windows of ``window_samples`` every ``hop_samples`` at the model rate."""

    window_samples: int
    hop_samples: int
    features: FeatureConfig
    lead_samples: int = 0  # every window starts this much earlier (0 <= lead < hop); silence before 0

    def __post_init__(self) -> None:
        if not 0 <= self.lead_samples < self.hop_samples or self.lead_samples % self.features.frame_shift:
            raise ValueError(
                "a window lead must be a whole number of frame shifts below the hop, "
                f"got {self.lead_samples} samples"
            )

    @classmethod
    def from_seconds(cls, window_s: float, hop_s: float, features: FeatureConfig) -> WindowPlan:
        """Validate and convert; raises ValueError with a message fit for the user."""
        window_n = window_samples(window_s, features)
        return cls(window_n, hop_samples(hop_s, features), features)

    @classmethod
    def from_frames(cls, window_frames: int, hop_s: float, features: FeatureConfig) -> WindowPlan:
        """Windows of ``window_frames`` frames (a checkpoint's ``target_frames``) every ``hop_s``."""
        return cls(window_samples_for_frames(window_frames, features), hop_samples(hop_s, features), features)

    @property
    def window_s(self) -> float:
        return self.window_samples / self.features.sample_rate

    @property
    def hop_s(self) -> float:
        return self.hop_samples / self.features.sample_rate

    def starts(self, num_samples: int) -> list[int]:
        """Start samples of the windows over a stream of ``num_samples`` (padded to one window if shorter):
        every hop, plus one flush with the end when the hops leave a tail. With a lead the first start is
        ``-lead`` (silence before the stream), but for a stream too short to fill that led-in window: its one
        window starts with it, padded after it (``pad_with_silence``), as everywhere else."""
        if num_samples < self.window_samples - self.lead_samples:
            return [0]
        total = num_samples
        starts = [self.start_sample(0)]
        while self.start_sample(len(starts)) + self.window_samples <= total:
            starts.append(self.start_sample(len(starts)))
        if self.tail_start(total) > starts[-1]:
            starts.append(self.tail_start(total))
        return starts

    @property
    def frames_per_window(self) -> int:
        return self.features.num_frames(self.window_samples)

    @property
    def input_frames(self) -> int:
        """Frames in one model input (the plan protocol shared with ``ColumnPlan``)."""
        return self.frames_per_window

    @property
    def result_every_s(self) -> float:
        """Seconds of audio between two results: one hop."""
        return self.hop_s

    def describe(self) -> str:
        lead = self.lead_samples / self.features.sample_rate
        text = f"window {self.window_s:g} s, hop {self.hop_s:g} s"
        if not lead:
            return text
        return f"{text} (staggered: {lead:g} s ahead of the hop grid, led in by {lead:g} s of silence)"

    def start_sample(self, k: int) -> int:
        """Start of window ``k`` in stream samples (negative for a led-in first window)."""
        return k * self.hop_samples - self.lead_samples

    def staggered(self, position: int, count: int) -> WindowPlan:
        """This plan for stream ``position`` of ``count`` streams that deliver at the same pace: its
        windows start ``position / count`` of a hop earlier (rounded down to the frame grid), the first
        led in by that much silence, so that the streams' windows, the first ones included, reach the
        model spread over the hop instead of all at once."""
        shift = self.features.frame_shift
        lead = (self.hop_samples * position // max(count, 1)) // shift * shift
        return replace(self, lead_samples=lead)

    def tail_start(self, total_samples: int) -> int:
        """Start of the end-aligned window over ``total_samples`` (on the frame grid, fully inside)."""
        shift = self.features.frame_shift
        return ((total_samples - self.window_samples) // shift) * shift


@dataclass(frozen=True)
class ColumnPlan:
    """Recurrent steps of ``column_frames`` frames."""

    column_frames: int
    features: FeatureConfig

    def span(self, k: int) -> tuple[int, int]:
        """Samples ``[start, end)`` covered by column ``k``'s frames."""
        f = self.features
        first = k * self.column_frames
        last = first + self.column_frames - 1
        return first * f.frame_shift, last * f.frame_shift + f.frame_length

    @property
    def input_frames(self) -> int:
        """Frames in one model input (one step)."""
        return self.column_frames

    @property
    def result_every_s(self) -> float:
        """Seconds of audio between two results: one column of frames."""
        return self.column_frames * self.features.frame_shift / self.features.sample_rate

    def describe(self) -> str:
        return f"recurrent, {self.column_frames} frames per step"


Plan = WindowPlan | ColumnPlan


def stream_plan(
    features: FeatureConfig, column_frames: int, window_s: float, hop_s: float
) -> WindowPlan | ColumnPlan:
    """The one choice between the two front ends: recurrent columns when the model steps
    (``column_frames`` > 0), else sliding windows; ValueError for a bad window or hop."""
    if column_frames > 0:
        return ColumnPlan(column_frames, features)
    return WindowPlan.from_seconds(window_s, hop_s, features)


def hop_samples(hop_s: float, features: FeatureConfig) -> int:
    """The hop in samples: a whole number of frame shifts (the one hop rule of every command), else
    ValueError."""
    return _frame_shifts("hop_s", hop_s, features)


def window_samples(window_s: float, features: FeatureConfig) -> int:
    """A window given in seconds, in samples: at least one frame and, as a checkpoint's window, a whole
    number of frame shifts (so that window times, frames and the end-aligned last window agree)."""
    n = _frame_shifts("window_s", window_s, features)
    if n < features.frame_length:
        frame_ms = features.frame_length_ms
        raise ValueError(f"window_s must hold at least one frame ({frame_ms:g} ms), got {window_s:g}")
    return n


def _frame_shifts(name: str, seconds: float, features: FeatureConfig) -> int:
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name} must be positive and finite, got {seconds!r}")
    n = round(seconds * features.sample_rate)
    if n == 0 or n % features.frame_shift or abs(n - seconds * features.sample_rate) > 1e-6 * max(1.0, n):
        raise ValueError(
            f"{name} must be a multiple of the frame shift ({features.frame_shift_ms:g} ms), got {seconds:g}"
        )
    return n


def window_samples_for_frames(frames: int, features: FeatureConfig) -> int:
    """The shortest whole number of frame shifts that holds ``frames`` frames (498 frames: 5.00 s)."""
    if frames < 1:
        raise ValueError(f"a window needs at least one frame, got {frames}")
    shift = features.frame_shift
    needed = (frames - 1) * shift + features.frame_length
    return -(-needed // shift) * shift


def checkpoint_window_s(info: ModelInfo) -> float:
    """The window a checkpoint was trained on (its ``target_frames``), in seconds (498 frames: 5.0 s)."""
    return (
        window_samples_for_frames(info.normalization.target_frames, info.features) / info.features.sample_rate
    )


CLIP_HOP_S = 2.5  # the hop of clip-level scores of long files (half of a 5-s window)


def clip_hop_s(info: ModelInfo) -> float:
    """The hop of clip-level scores (classify, evaluate, training's reports): ``offline_hop_s`` of the
    checkpoint's window."""
    return offline_hop_s(checkpoint_window_s(info))


def offline_hop_s(window_s: float) -> float:
    """The default hop of offline scoring: ``CLIP_HOP_S``, or half of ``window_s`` if that is shorter, so
    that a short window still covers all of a long file (a multiple of 10 ms)."""
    half = math.floor(window_s / 2 * 100) / 100
    return min(CLIP_HOP_S, max(0.01, half))


def checkpoint_plan(info: ModelInfo, hop_s: float) -> WindowPlan:
    """Windows of the checkpoint's own ``target_frames`` every ``hop_s`` (ValueError for a bad hop)."""
    return WindowPlan.from_frames(info.normalization.target_frames, hop_s, info.features)


def pad_with_silence(wave: np.ndarray, num_samples: int) -> np.ndarray:
    """``wave`` followed by silence up to ``num_samples`` (unchanged if already that long): the one rule
    for audio shorter than a window, in training, evaluation, classify, replay and run."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if wave.size >= num_samples:
        return wave
    return np.concatenate([wave, np.zeros(num_samples - wave.size, dtype=np.float32)])
