"""Window-level scores of audio files, by the daemon's own rules: the adapter that ``classify --windows``
(local and on Ray) goes through.

Windows are placed as the daemon places them (``audio_core.windows`` plans and
``WindowFrontEnd``: a window every hop, an end-aligned tail window, a file shorter than one window padded
to one); the file is read as ``audio_core.audio_file.read_chunks`` reads it, and windows are scored by the
engine's ``ModelRunner``. Nothing here places or scores windows itself. A file that fails part-way (a
corrupt tail) keeps the windows of its readable part, as its replay does, and says how much was not
classified (``FileResult.partial``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audio_core.audio_file import READ_BLOCK_S, display_path, read_chunks
from audio_core.digital_silence import SILENCE_NOTE, SignalWatch
from audio_core.errors import TruncatedAudio
from audio_core.front_end import FrontEnd, front_end
from audio_core.scoring import top_k as best_labels
from audio_core.windows import Window, WindowPlan, checkpoint_plan
from streamd.clip_scoring import BATCH_SIZE, padding_s
from streamd.errors import AudioInputError, ConfigError
from streamd.model_loading import LoadedModel
from streamd.model_runner import ModelRunner, check_window_size


@dataclass(frozen=True)
class WindowResult:
    """One window of one file: its span and its top-k labels at or above the minimum score."""

    index: int
    t_start: float
    t_end: float
    labels: list[dict[str, Any]]  # [{"label", "score"}], best first


@dataclass(frozen=True)
class FileResult:
    """Every window of a file (committed together), or why the file could not be classified."""

    file: str
    windows: list[WindowResult]
    duration_s: float = 0.0
    error: str | None = None  # nothing of the file was classified
    partial: str | None = None  # why its end was not: ``windows`` are those of its readable part
    padded_s: float = 0.0  # the silence that made a file shorter than a window one window long
    silent: bool = False  # digital silence (``audio_core.digital_silence``): its scores mean nothing

    def notes(self, unit: str = "window") -> list[str]:
        """What classify says of such a file (``streamd: note/warning: ...``), the one wording of both."""
        shown = display_path(self.file)
        out = [f"streamd: note: {shown}: {short_audio_note(self.duration_s, self.padded_s, unit)}"]
        out = out if self.padded_s > 0 else []
        return out + ([f"streamd: warning: {shown}: {SILENCE_NOTE}"] if self.silent else [])


def short_audio_note(real_s: float, padded_s: float, unit: str = "window") -> str:
    """A file shorter than one window (or recurrent step), padded with silence to one."""
    whole = f"{real_s:.4g} s < {real_s + padded_s:.4g} s"
    return f"audio shorter than one {unit} ({whole}): padded with silence to one"


def partial_result(file: str, windows: list[WindowResult], seconds: float, exc: TruncatedAudio) -> FileResult:
    """A file that failed part-way: the windows of its readable part (``seconds`` long) and, in
    ``partial``, the failure and how much was not classified (an error when no window was left)."""
    unread = exc.unread or f"; what followed its first {exc.read_s:.2f} s was not classified"
    if not windows:
        return FileResult(file, [], error=str(exc))
    return FileResult(file, windows, seconds, partial=f"{exc}{unread}")


def window_plan(loaded: LoadedModel, window_s: float | None, hop_s: float) -> WindowPlan:
    """The daemon's window plan for ``loaded`` (``window_s`` None: the checkpoint's own window);
    ConfigError for recurrent models or bad spans."""
    if loaded.recurrent:
        raise ConfigError("--windows needs a windowed model (recurrent models step per column)")
    try:
        if window_s is None:
            return checkpoint_plan(loaded.info, hop_s)
        plan = WindowPlan.from_seconds(window_s, hop_s, loaded.info.features)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    check_window_size(loaded, plan.frames_per_window, window_s)
    return plan


def file_windows(
    path: str | Path, front: FrontEnd, block_s: float = READ_BLOCK_S, signal: SignalWatch | None = None
) -> Iterator[Window]:
    """The windows of ``path`` in order, as the daemon emits them, through ``front`` (a fresh
    ``WindowFrontEnd``; afterwards ``front.samples`` is the file's length at the model rate).

    Raises ``AudioInputError`` (naming the file) when it cannot be read, so callers commit a file only once
    this generator is exhausted; a ``TruncatedAudio`` (a failure part-way) comes after the windows of the
    readable part, its tail window included: the stream ends there as its replay's does.
    """
    try:
        for chunk in read_chunks(path, front.cfg.sample_rate, block_s, signal):
            yield from front.accept(chunk)
    except TruncatedAudio:
        yield from front.finish()
        raise
    yield from front.finish()


def duration_s(front: FrontEnd) -> float:
    """Seconds of real (unpadded) audio ``front`` has taken."""
    return front.samples / front.cfg.sample_rate


def window_labels(
    scores: np.ndarray, labels: Sequence[str], top_k: int, min_score: float
) -> list[dict[str, Any]]:
    """The ``top_k`` best labels of one window, only those scoring at least ``min_score``."""
    best = best_labels(scores, labels, top_k)
    return [{"label": label, "score": score} for label, score in best if score >= min_score]


def score_batch(runner: ModelRunner, features: list[Any]) -> np.ndarray:
    """Class scores ``(B, C)`` of windows' features ``[(T, F)] * B`` in one model call."""
    return runner.score_windows(features).numpy()


def classify_file(
    runner: ModelRunner,
    path: str | Path,
    plan: WindowPlan,
    top_k: int,
    min_score: float,
    batch_size: int = BATCH_SIZE,
) -> FileResult:
    """Every window of ``path`` with its labels; a file that cannot be read gives ``error`` instead."""
    labels = runner.loaded.info.labels
    out: list[WindowResult] = []
    pending: list[Window] = []
    front = front_end(plan)
    signal = SignalWatch()

    def flush() -> None:
        scores = score_batch(runner, [w.features for w in pending])
        for window, row in zip(pending, scores, strict=True):
            out.append(
                WindowResult(
                    window.index, window.t_start, window.t_end, window_labels(row, labels, top_k, min_score)
                )
            )
        pending.clear()

    try:
        for window in file_windows(path, front, signal=signal):
            pending.append(window)
            if len(pending) >= batch_size:
                flush()
    except TruncatedAudio as exc:
        if pending:
            flush()
        return partial_result(str(path), out, duration_s(front), exc)
    except AudioInputError as exc:
        return FileResult(str(path), [], error=str(exc))
    if pending:
        flush()
    padded_s = padding_s(plan, front.samples)
    return FileResult(str(path), out, duration_s(front), padded_s=padded_s, silent=not signal.heard)
