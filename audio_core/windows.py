"""From model-rate samples to classifier inputs: sliding windows or recurrent columns of fbank frames.

Frames are computed once, as samples arrive (``StreamingFbank``), and kept by absolute frame index; a
window is a slice of them. Frame ``f`` covers samples ``[f*shift, f*shift + length)``.

Windowed models: window ``k`` covers samples ``[k*hop, k*hop + window)`` (``t_start = k*hop_s``,
``t_end = t_start + window_s``) and holds the frames fully inside it. The hop must be a whole number of
frame shifts, so those frames are exactly ``compute_fbank`` of the window's samples. At the end of a stream
a file shorter than one window is padded with silence to one window, and a last window aligned to the end
(start rounded down to the frame grid) classifies the tail.

Recurrent models: column ``k`` is frames ``[k*c, (k+1)*c)``; at the end the last partial column is
completed with frames of silence.

Pure module: no threads, sockets or devices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from audio_core.fbank import StreamingFbank
from models.common import FeatureConfig, ModelInfo

_SILENCE_DBFS = -120.0


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
    tail: bool = False  # the extra end-aligned window of a flush


@dataclass(frozen=True)
class WindowPlan:
    """Sliding windows of ``window_samples`` every ``hop_samples`` at the model rate."""

    window_samples: int
    hop_samples: int
    features: FeatureConfig

    @classmethod
    def from_seconds(cls, window_s: float, hop_s: float, features: FeatureConfig) -> WindowPlan:
        """Validate and convert; raises ValueError with a message fit for the user."""
        window_n = _whole_samples("window_s", window_s, features.sample_rate)
        if window_n < features.frame_length:
            raise ValueError(f"window_s must hold at least one frame ({features.frame_length_ms:g} ms)")
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
        every hop, plus one flush with the end when the hops leave a tail."""
        total = max(num_samples, self.window_samples)
        starts = list(range(0, total - self.window_samples + 1, self.hop_samples))
        if self.tail_start(total) > starts[-1]:
            starts.append(self.tail_start(total))
        return starts

    @property
    def frames_per_window(self) -> int:
        return self.features.num_frames(self.window_samples)

    def start_sample(self, k: int) -> int:
        return k * self.hop_samples

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


def _whole_samples(name: str, seconds: float, rate: int) -> int:
    n = round(seconds * rate)
    if n <= 0 or not math.isfinite(seconds):
        raise ValueError(f"{name} must be positive, got {seconds!r}")
    if abs(n - seconds * rate) > 1e-6 * max(1.0, n):
        raise ValueError(f"{name} must be a whole number of samples at {rate} Hz, got {seconds!r}")
    return n


def hop_samples(hop_s: float, features: FeatureConfig) -> int:
    """The hop in samples: a whole number of frame shifts (the one hop rule of every command), else
    ValueError."""
    n = _whole_samples("hop_s", hop_s, features.sample_rate)
    if n % features.frame_shift:
        raise ValueError(
            f"hop_s must be a multiple of the frame shift ({features.frame_shift_ms:g} ms), got {hop_s:g}"
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


class _IndexedRows:
    """Rows kept by absolute index in one contiguous tensor; rows before ``trim``'s index may be dropped."""

    def __init__(self, width: int, capacity: int) -> None:
        self._buf = torch.zeros(max(capacity, 1), width)
        self.base = 0  # absolute index of _buf[0]
        self.end = 0  # absolute index one past the newest row
        self._keep_from = 0

    def append(self, rows: torch.Tensor) -> None:
        n = rows.shape[0]
        if self.end - self.base + n > self._buf.shape[0]:
            self._compact()
        used = self.end - self.base
        if used + n > self._buf.shape[0]:
            grown = torch.zeros(max(2 * self._buf.shape[0], used + n), self._buf.shape[1])
            grown[:used] = self._buf[:used]
            self._buf = grown
        self._buf[used : used + n] = rows
        self.end += n

    def _compact(self) -> None:
        drop = min(self._keep_from, self.end) - self.base
        if drop > 0:
            used = self.end - self.base
            self._buf[: used - drop] = self._buf[drop:used].clone()
            self.base += drop

    def trim(self, keep_from: int) -> None:
        """Rows before ``keep_from`` are no longer needed (their memory is reused on a later append)."""
        self._keep_from = max(self._keep_from, keep_from)

    @property
    def capacity(self) -> int:
        return self._buf.shape[0]

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """A copy of rows ``[start, stop)``; they must still be kept."""
        if start < self.base or stop > self.end:
            raise IndexError(f"rows [{start}, {stop}) not held (have [{self.base}, {self.end}))")
        return self._buf[start - self.base : stop - self.base].clone()


class FeatureFrontEnd:
    """Per stream: model-rate samples in, ready ``Window`` objects out (windows or recurrent columns).

    ``accept`` returns what became ready; ``finish`` pads and flushes at the end of the stream.
    """

    def __init__(self, plan: WindowPlan | ColumnPlan) -> None:
        self.plan = plan
        self.cfg = plan.features
        self.fbank = StreamingFbank(self.cfg)
        span = plan.frames_per_window if isinstance(plan, WindowPlan) else plan.column_frames
        self._frames = _IndexedRows(self.cfg.num_mel_bins, 2 * span + 64)
        self._energy = _IndexedRows(1, 2 * span + 64)  # sum of squares per frame-shift block of samples
        self._partial_energy = 0.0
        self._partial_count = 0
        self.samples = 0  # model-rate samples accepted (real, not padding)
        self._fed = 0  # samples fed to the fbank, padding included
        self.next_index = 0  # index of the next window / column to emit
        self._last_start = -1  # start sample of the last emitted window

    # -- input -----------------------------------------------------------------------------------------

    def accept(self, samples: np.ndarray) -> list[Window]:
        """Feed real samples; return the windows / columns they completed."""
        data = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.samples += data.size
        self._feed(data)
        return self._ready()

    def finish(self) -> list[Window]:
        """End of stream: pad with silence where needed and emit what is left to classify."""
        if isinstance(self.plan, ColumnPlan):
            return self._finish_columns(self.plan)
        return self._finish_windows(self.plan)

    def _feed(self, data: np.ndarray) -> None:
        self._fed += data.size
        self._add_energy(data)
        frames = self.fbank.accept(data)
        if frames.shape[0]:
            self._frames.append(frames)

    def _add_energy(self, data: np.ndarray) -> None:
        shift = self.cfg.frame_shift
        squares = np.square(data, dtype=np.float64)
        head = min(data.size, shift - self._partial_count)
        self._partial_energy += float(squares[:head].sum())
        self._partial_count += head
        if self._partial_count < shift:
            return
        rest = squares[head:]
        whole = rest.size // shift
        blocks = np.empty(whole + 1)
        blocks[0] = self._partial_energy
        blocks[1:] = rest[: whole * shift].reshape(whole, shift).sum(axis=1)
        self._energy.append(torch.from_numpy(blocks).float().unsqueeze(1))
        tail = rest[whole * shift :]
        self._partial_energy = float(tail.sum())
        self._partial_count = tail.size

    def _level_dbfs(self, start: int, end: int) -> float:
        """Level of samples ``[start, end)`` from the complete blocks among them."""
        shift = self.cfg.frame_shift
        b0 = max(-(-start // shift), self._energy.base)
        b1 = min(end // shift, self._energy.end)
        if b1 <= b0:
            return _SILENCE_DBFS
        mean_square = float(self._energy.rows(b0, b1).sum()) / ((b1 - b0) * shift)
        return max(_SILENCE_DBFS, 10.0 * math.log10(mean_square)) if mean_square > 0 else _SILENCE_DBFS

    # -- windows ---------------------------------------------------------------------------------------

    def _ready(self) -> list[Window]:
        if isinstance(self.plan, ColumnPlan):
            return self._ready_columns(self.plan)
        out: list[Window] = []
        plan = self.plan
        while plan.start_sample(self.next_index) + plan.window_samples <= self.samples:
            out.append(self._window(plan.start_sample(self.next_index)))
        if out:  # keep what the next window or an end-aligned tail window (after the last start) may need
            keep = (self._last_start + self.cfg.frame_shift) // self.cfg.frame_shift
            self._frames.trim(keep)
            self._energy.trim(keep)
        return out

    def _window(self, start: int, *, tail: bool = False, padded_s: float = 0.0) -> Window:
        plan = self.plan
        assert isinstance(plan, WindowPlan)
        shift = self.cfg.frame_shift
        first = start // shift
        end = start + plan.window_samples
        rate = self.cfg.sample_rate
        window = Window(
            index=self.next_index,
            t_start=start / rate,
            t_end=end / rate,
            features=self._frames.rows(first, first + plan.frames_per_window),
            end_sample=min(end, self.samples),
            level_dbfs=self._level_dbfs(start, min(end, self.samples)),
            padded_s=padded_s,
            tail=tail,
        )
        self.next_index += 1
        self._last_start = start
        return window

    def _finish_windows(self, plan: WindowPlan) -> list[Window]:
        if self.next_index == 0:
            if self.samples == 0:
                return []
            missing = plan.window_samples - self.samples
            self._feed(np.zeros(missing, dtype=np.float32))  # the rule of pad_with_silence, streamed
            return [self._window(0, padded_s=missing / self.cfg.sample_rate)]
        start = plan.tail_start(self.samples)
        if start <= self._last_start:
            return []
        return [self._window(start, tail=True)]

    # -- recurrent columns -----------------------------------------------------------------------------

    def _ready_columns(self, plan: ColumnPlan) -> list[Window]:
        out: list[Window] = []
        rate = self.cfg.sample_rate
        while (self.next_index + 1) * plan.column_frames <= self._frames.end:
            k = self.next_index
            start, end = plan.span(k)
            first = k * plan.column_frames
            out.append(
                Window(
                    index=k,
                    t_start=start / rate,
                    t_end=end / rate,
                    features=self._frames.rows(first, first + plan.column_frames),
                    end_sample=min(end, self.samples),
                    level_dbfs=self._level_dbfs(start, min(end, self.samples)),
                    padded_s=max(0, end - self.samples) / rate,
                )
            )
            self.next_index += 1
        keep = self.next_index * plan.column_frames
        self._frames.trim(keep)
        self._energy.trim(keep)
        return out

    def _finish_columns(self, plan: ColumnPlan) -> list[Window]:
        if self.samples == 0:
            return []
        frames = self._frames.end
        target = max(plan.column_frames, -(-frames // plan.column_frames) * plan.column_frames)
        if target == frames:
            return []
        needed = (target - 1) * self.cfg.frame_shift + self.cfg.frame_length
        self._feed(np.zeros(max(0, needed - self._fed), dtype=np.float32))
        return self._ready_columns(plan)
