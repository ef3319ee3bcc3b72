"""Clip-level scores of an audio file, read and scored window by window in constant memory.

The file goes through the daemon's own streaming pieces: ``audio_core.audio_file`` (validation, chunked
reading), ``audio_core.resample`` (downmix, streaming soxr), ``audio_core.windows`` (fbank frames
computed once; windows or recurrent columns) and the engine's ``ModelRunner``. The scores are those that
``training.evaluate.waveform_scores`` (the in-memory reference) gives for the whole file:

- windowed models: the mean probabilities of windows of ``target_frames`` frames every hop, plus one
  flush with the end of the file;
- recurrent models: stepped column by column, the mean of the steps where those same windows end; a
  file shorter than one window is scored at its last step (as its replay ends; a file shorter than one
  column is completed with silence to one, ``audio_core.front_end.ColumnFrontEnd``);
- for windowed models a file shorter than one window is padded with silence to one
  (``audio_core.windows.pad_with_silence``, the rule of training, evaluate, replay and run), so a short
  file scores the same everywhere.

A file of digital silence (``audio_core.digital_silence``) is scored all the same, and marked ``silent``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audio_core.audio_file import READ_BLOCK_S, read_chunks
from audio_core.digital_silence import SignalWatch
from audio_core.front_end import front_end
from audio_core.scoring import State
from audio_core.windows import ColumnPlan, Window, WindowPlan, checkpoint_plan
from streamd.model_loading import LoadedModel
from streamd.model_runner import ModelRunner

BATCH_SIZE = 4  # windows per model call: as fast as 16 on CPU, with a quarter of the activations


def padding_s(plan: WindowPlan, samples: int) -> float:
    """The silence a file of ``samples`` is padded with to one window, where that adds frames (a window
    is a whole number of frame shifts: a file as long as the window's frames is not short, though a few
    samples pad it to that length); 0.0 otherwise. The one rule of clip and window classify."""
    cfg = plan.features
    short = cfg.num_frames(samples) < cfg.num_frames(plan.window_samples)
    return max(0, plan.window_samples - samples) / cfg.sample_rate if short else 0.0


@dataclass(frozen=True)
class FileScores:
    """A file's clip-level probabilities and how they were obtained."""

    scores: np.ndarray  # (C,)
    windows: int  # windows (windowed models) or window ends (recurrent models) averaged
    duration_s: float  # audio at the model rate
    padded_s: float = 0.0  # > 0: silence added (windowed: to one window; recurrent: to one column)
    silent: bool = False  # every sample zero after the downmix: the scores say nothing of the input


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
        self.plan = plan
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
        if self.held:  # the end-aligned window may end one frame before the last frame: two steps kept
            keep_from = min(self.next_end // self.column - 1, max(self.held) - 1)
            for step in [k for k in self.held if k < keep_from]:
                del self.held[step]

    def finish(self, samples: int, frames: int) -> None:
        """The end of the file (``samples`` at the model rate, ``frames`` computed): the window aligned to
        the end (``WindowPlan.tail_start``: on the frame grid, fully inside, as ``window_scores`` takes
        it), unless a window ended there; a file shorter than one window has only its last step."""
        width = self.plan.frames_per_window
        if frames < width:
            self.mean.add(self.held[max(frames // self.column, 1) - 1][None])
            return
        end = self.plan.tail_start(samples) // self.plan.features.frame_shift + width
        if end > self.last_end:
            self.mean.add(self.held[end // self.column - 1][None])


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
    plan = checkpoint_plan(info, hop_s)
    runner = ModelRunner(loaded)
    front = front_end(ColumnPlan(loaded.column_frames, cfg) if loaded.recurrent else plan)
    steps = _StepMeans(runner, plan, loaded.column_frames) if loaded.recurrent else None
    windows = None if loaded.recurrent else _WindowMeans(runner, batch_size)
    signal = SignalWatch()
    for chunk in read_chunks(path, cfg.sample_rate, block_s, signal):
        ready = front.accept(chunk)
        if steps is not None:
            steps.add(ready, front.fbank.frames_emitted)
        elif windows is not None:
            windows.add(ready)
    duration_s = front.samples / cfg.sample_rate
    if steps is not None:  # no padding to a window: a short file is scored at its last step
        last = front.finish()  # a file shorter than one column: that column, completed with silence
        steps.add(last, front.fbank.frames_emitted)
        steps.finish(front.samples, front.fbank.frames_emitted)
        padded = sum(w.padded_s for w in last)
        return FileScores(steps.mean.value(), steps.mean.count, duration_s, padded, silent=not signal.heard)
    assert windows is not None
    padded_s = padding_s(plan, front.samples)
    windows.add(front.finish(), last=True)  # pads a short file with silence to one window
    return FileScores(windows.mean.value(), windows.mean.count, duration_s, padded_s, silent=not signal.heard)
