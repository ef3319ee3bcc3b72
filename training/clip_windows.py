"""Which windows of its training clips a run trains on.

A clip up to one window long gives one: its start (padded with silence where shorter, the rule of every
command). A longer clip gives ``ceil(length / window)`` windows, at most ``MAX_WINDOWS_PER_CLIP``, spread
evenly from its start to its end so that every frame is in one of them, and a window of digital silence
(every feature equal: the fbank of a constant) is left out unless the clip has no other. Training on a
long recording's first window alone left the rest of it unheard, and a recording that starts with silence
was trained as labelled silence. Each window keeps its clip's targets; held-out clips are still scored
whole by the mean of their windows (``training.evaluate``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audio_core.windows import window_samples_for_frames
from models.common import FeatureConfig
from training.cache import clip_fbank
from training.clips import Clip

MAX_WINDOWS_PER_CLIP = 32  # 2.7 minutes of 5-s windows: a long recording does not swamp the others


def window_starts(frames: int, window: int) -> list[int]:
    """Frame offsets of the windows a clip of ``frames`` frames gives (module docstring)."""
    if frames <= window:
        return [0]
    count = min(MAX_WINDOWS_PER_CLIP, math.ceil(frames / window))
    return [round(i * (frames - window) / (count - 1)) for i in range(count)]


def window_count(frames: int, window: int) -> int:
    """How many windows a clip of ``frames`` frames gives before silent ones are left out."""
    return len(window_starts(frames, window))


@dataclass(frozen=True)
class TrainingWindows:
    """The windows of a run's clips: ``clip[i]`` is the index (into the clip list) of window ``i``,
    ``start_s[i]`` its start in seconds (the same span whatever features a teacher computes)."""

    clip: list[int]
    start_s: list[float]
    clips: int  # how many clips gave them
    window_s: float
    real_frames: list[int] = field(default_factory=list)  # each window's frames of audio (before padding)

    def __len__(self) -> int:
        return len(self.clip)

    @property
    def long_clips(self) -> int:
        """Clips that gave more than one window."""
        return len({c for c, s in zip(self.clip, self.start_s, strict=True) if s > 0})

    def note(self) -> str | None:
        """One line for a run whose clips gave more windows than clips, else None."""
        if len(self) == self.clips:
            return None
        return (
            f"{self.long_clips} clip(s) longer than the {self.window_s:g}-s window: trained on windows "
            f"spread over each (up to {MAX_WINDOWS_PER_CLIP}, silent ones left out): {len(self)} windows "
            f"from {self.clips} clips"
        )


def training_windows(
    clips: Sequence[Clip], cfg: FeatureConfig, cache_dir: Path | None, num_frames: int
) -> TrainingWindows:
    """The windows of ``clips`` (module docstring), from their cached fbanks."""
    shift_s = cfg.frame_shift / cfg.sample_rate
    clip, start_s, real = [], [], []
    for index, item in enumerate(clips):
        fbank = clip_fbank(Path(item.path), cfg, cache_dir)
        starts = window_starts(fbank.shape[0], num_frames)
        heard = [s for s in starts if np.ptp(fbank[s : s + num_frames]) > 0] or starts[:1]
        clip += [index] * len(heard)
        start_s += [s * shift_s for s in heard]
        real += [min(num_frames, fbank.shape[0] - s) for s in heard]
    window_s = window_samples_for_frames(num_frames, cfg) / cfg.sample_rate
    return TrainingWindows(clip, start_s, len(clips), round(window_s, 3), real)
