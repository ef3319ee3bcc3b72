"""Clip-level scores of an audio file, read and scored window by window in constant memory.

The file goes through the daemon's own streaming pieces: ``audio_file`` (validation, chunked reading),
``resample`` (downmix, streaming soxr), ``windows.FeatureFrontEnd`` (fbank frames computed once; windows
or recurrent columns) and the engine's ``ModelRunner``. The scores are those that
``training.evaluate.waveform_scores`` (the in-memory reference) gives for the whole file:

- windowed models: the mean probabilities of windows of ``target_frames`` frames every hop, plus one
  flush with the end of the file;
- recurrent models: stepped column by column, the mean of the steps where those same windows end;
- a file shorter than one window is zero-padded to one (as in training): it is small, so the reference
  itself scores it, from the samples kept for that case.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from models.common import ModelInfo
from streamd.audio_file import audio_info, display_path, open_audio
from streamd.engine import ModelRunner, State
from streamd.errors import AudioInputError
from streamd.model_loading import LoadedModel
from streamd.resample import StreamingResampler, downmix
from streamd.windows import ColumnPlan, FeatureFrontEnd, Window, WindowPlan
from training.evaluate import hop_frames, waveform_scores

READ_BLOCK_S = 1.0
BATCH_SIZE = 4  # windows per model call: as fast as 16 on CPU, with a quarter of the activations


@dataclass(frozen=True)
class FileScores:
    """A file's clip-level probabilities and how they were obtained."""

    scores: np.ndarray  # (C,)
    windows: int  # windows (windowed models) or window ends (recurrent models) averaged
    duration_s: float  # audio at the model rate
    padded_s: float = 0.0  # > 0: the file was shorter than one window and padded to one


def clip_window_plan(info: ModelInfo, hop_s: float) -> WindowPlan:
    """Windows of ``target_frames`` frames every ``hop_s`` (rounded to whole frames), in samples."""
    cfg = info.features
    window_samples = (info.normalization.target_frames - 1) * cfg.frame_shift + cfg.frame_length
    return WindowPlan(window_samples, hop_frames(hop_s, cfg) * cfg.frame_shift, cfg)


def read_model_rate(
    path: str | Path, sample_rate: int, block_s: float = READ_BLOCK_S
) -> Iterator[np.ndarray]:
    """Mono float32 chunks of ``path`` at ``sample_rate``, read ``block_s`` at a time.

    Problems (unreadable file, no samples, a read error mid-file, NaN or infinite samples) raise
    ``AudioInputError`` naming the file.
    """
    name = display_path(path)
    with open_audio(path) as handle:
        info = audio_info(handle, path)
        resampler = StreamingResampler(info.sample_rate, sample_rate)
        block = max(1, round(block_s * info.sample_rate))
        read = 0
        while True:
            try:
                data = handle.read(block, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError, OSError) as exc:
                raise AudioInputError(f"{name}: read error ({type(exc).__name__}: {exc})") from None
            if data.shape[0] == 0:
                break
            finite = np.isfinite(data).all(axis=1)
            if not finite.all():
                at_s = (read + int(np.argmin(finite))) / info.sample_rate
                raise AudioInputError(f"{name}: the audio holds NaN or infinite samples (at {at_s:.3f} s)")
            read += data.shape[0]
            yield resampler.process(downmix(data))
    yield resampler.process(np.zeros(0, dtype=np.float32), last=True)


class _Mean:
    """Running mean of score rows ``(C,)``."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.count = 0

    def add(self, rows: torch.Tensor) -> None:
        """Add rows ``(B, C)``."""
        part = rows.double().sum(dim=0).numpy()
        self.total = part if self.total is None else self.total + part
        self.count += rows.shape[0]

    def value(self) -> np.ndarray:
        assert self.total is not None and self.count > 0
        return (self.total / self.count).astype(np.float32)


class _WindowMeans:
    """Windowed models: scores windows in batches and averages them."""

    def __init__(self, runner: ModelRunner, batch_size: int) -> None:
        self.runner = runner
        self.batch_size = batch_size
        self.pending: list[torch.Tensor] = []
        self.mean = _Mean()

    def add(self, windows: list[Window], *, last: bool = False) -> None:
        self.pending += [w.features for w in windows]
        while self.pending and (len(self.pending) >= self.batch_size or last):
            batch, self.pending = self.pending[: self.batch_size], self.pending[self.batch_size :]
            self.mean.add(self.runner.score_windows(batch))


class _StepMeans:
    """Recurrent models: steps column by column and averages the steps where the clip's windows end.

    A window ending at frame ``e`` counts the step of column ``e // column_frames - 1`` (the last one it
    completes). Only the step scores a later window end (or the end-aligned last window) may still
    need are held.
    """

    def __init__(self, runner: ModelRunner, plan: WindowPlan, column_frames: int) -> None:
        self.runner = runner
        self.column = column_frames
        self.hop = plan.hop_samples // plan.features.frame_shift
        self.next_end = plan.frames_per_window  # end frame of the next sliding window
        self.last_end = 0
        self.state: State = runner.init_state()
        self.held: dict[int, torch.Tensor] = {}  # step index -> scores (C,)
        self.mean = _Mean()

    def add(self, columns: list[Window], frames: int) -> None:
        """Step over new ``columns``; ``frames``: frames of real audio computed so far."""
        for column in columns:
            scores, (self.state,) = self.runner.score_columns([column.features], [self.state])
            self.held[column.index] = scores[0]
        while self.next_end <= frames:
            self.mean.add(self.held[self.next_end // self.column - 1][None])
            self.last_end, self.next_end = self.next_end, self.next_end + self.hop
        if self.held:
            keep_from = min(self.next_end // self.column - 1, max(self.held))
            for step in [k for k in self.held if k < keep_from]:
                del self.held[step]

    def finish(self, frames: int) -> None:
        """The end of the file at ``frames``: the window flush with the end, unless a window ended there."""
        if self.last_end != frames:
            self.mean.add(self.held[frames // self.column - 1][None])


class _Head:
    """The first ``capacity`` samples of a stream (all of a file shorter than one window)."""

    def __init__(self, capacity: int) -> None:
        self.samples = np.zeros(capacity, dtype=np.float32)
        self.size = 0

    def add(self, chunk: np.ndarray) -> None:
        n = min(chunk.size, self.samples.size - self.size)
        self.samples[self.size : self.size + n] = chunk[:n]
        self.size += n


def score_file(
    loaded: LoadedModel,
    path: str | Path,
    hop_s: float,
    *,
    block_s: float = READ_BLOCK_S,
    batch_size: int = BATCH_SIZE,
) -> FileScores:
    """Clip-level probabilities of the audio file ``path``, in memory independent of its length."""
    info = loaded.info
    cfg = info.features
    plan = clip_window_plan(info, hop_s)
    runner = ModelRunner(loaded)
    front = FeatureFrontEnd(ColumnPlan(loaded.column_frames, cfg) if loaded.recurrent else plan)
    steps = _StepMeans(runner, plan, loaded.column_frames) if loaded.recurrent else None
    windows = None if loaded.recurrent else _WindowMeans(runner, batch_size)
    head = _Head(plan.window_samples)
    for chunk in read_model_rate(path, cfg.sample_rate, block_s):
        if head.size < head.samples.size:
            head.add(chunk)
        ready = front.accept(chunk)
        if steps is not None:
            steps.add(ready, front.fbank.frames_emitted)
        elif windows is not None:
            windows.add(ready)
    duration_s = front.samples / cfg.sample_rate
    if front.samples < cfg.frame_length:
        raise AudioInputError(
            f"{display_path(path)}: audio shorter than one {cfg.frame_length_ms:g} ms frame"
        )
    if front.samples < plan.window_samples:  # zero-padded to one window: the in-memory reference
        scores = waveform_scores(loaded.model, info, head.samples[: head.size], hop_s)
        return FileScores(scores, 1, duration_s, plan.window_samples / cfg.sample_rate - duration_s)
    if steps is not None:
        steps.finish(front.fbank.frames_emitted)
        mean = steps.mean
    else:
        assert windows is not None
        windows.add(front.finish(), last=True)
        mean = windows.mean
    return FileScores(mean.value(), mean.count, duration_s)
