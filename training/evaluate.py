"""Evaluation of a checkpoint: clip-level scores and metrics, whole-file scoring, streaming soundscapes.

Whole-file scoring of an in-memory waveform (``waveform_scores``; the plain reference of
``streamd.clip_scoring``, which gives ``streamd classify`` the same scores reading files window by window)
works for any checkpoint:

- windowed models see windows of ``normalization.target_frames`` frames (5 s for ESC-50 models) every
  ``hop_s``; a file shorter than one window is padded with silence to one, before the fbank
  (``audio_core.windows.pad_with_silence``, the rule of training and of every command); the last window is
  aligned to the end of the file so that its tail is covered; the file's scores are the mean of the
  windows' probabilities (softmax, or sigmoid for multi-label models);
- recurrent models run ``forward_steps`` once over the whole file and the same mean is taken over the
  steps that end where those windows end, i.e. each aggregated step has seen at least one window of
  audio, the way the model was trained; a file shorter than one window is not padded but scored at its
  last step (after appended silence the model would answer "nothing").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audio_core.audio_file import read_audio
from audio_core.compute import device_of
from audio_core.fbank import compute_fbank
from audio_core.scoring import scores, sequence_scores
from audio_core.windows import WindowPlan, checkpoint_plan, clip_hop_s, pad_with_silence
from models.common import ModelInfo, is_recurrent
from training import metrics
from training.cache import cached_fbanks, clip_fbank
from training.clips import ClipSet
from training.soundscape_scoring import WindowPrediction


def _window_frames(info: ModelInfo, wave: np.ndarray, plan: WindowPlan) -> tuple:
    """The padded waveform's fbank, the window starts (samples) and each window's first frame."""
    padded = pad_with_silence(wave, plan.window_samples)
    fbank = compute_fbank(padded, info.features)
    if fbank.shape[0] == 0:
        raise ValueError(f"audio shorter than one {info.features.frame_length_ms:g} ms frame")
    starts = plan.starts(padded.size)
    return fbank, starts, [s // info.features.frame_shift for s in starts]


def window_scores(
    model: nn.Module,
    info: ModelInfo,
    wave: np.ndarray,
    plan: WindowPlan,
    batch_size: int = 16,
    *,
    precision: str = "fp32",
) -> tuple[list[int], torch.Tensor]:
    """Per-window probabilities of a mono waveform: (start samples ``[W]``, ``(W, C)``).

    Windowed models score each window of ``plan``; recurrent models run ``forward_steps`` once and give,
    per window, the step where the window ends (the step that has seen one window of audio). A recurrent
    model is not padded to a window: a file shorter than one is scored at its last step
    (``recurrent_steps``), as its replay ends, rather than after seconds of appended silence.
    """
    width = plan.frames_per_window
    if is_recurrent(model):
        steps = recurrent_steps(model, info, wave, precision=precision)  # (S, C)
        column, shift = int(model.column_frames), info.features.frame_shift
        starts = plan.starts(wave.size)
        index = [min((s // shift + width) // column - 1, steps.shape[0] - 1) for s in starts]
        return starts, steps[torch.tensor(index)]
    fbank, starts, firsts = _window_frames(info, wave, plan)
    out = []
    for i in range(0, len(firsts), batch_size):
        batch = torch.stack([fbank[f : f + width] for f in firsts[i : i + batch_size]])  # (B, width, F)
        out.append(scores(model, info, batch.to(device_of(model)), precision=precision))
    return starts, torch.cat(out)


def recurrent_steps(
    model: nn.Module, info: ModelInfo, wave: np.ndarray, *, precision: str = "fp32"
) -> torch.Tensor:
    """A recurrent model's probabilities ``(S, C)`` at each whole column of a mono waveform (the daemon's
    ``ColumnFrontEnd``): frames after the last whole column are not classified, and a file shorter than
    one column is completed with silence to one."""
    cfg = info.features
    column = int(model.column_frames)
    frames = cfg.num_frames(wave.size)
    target = max(column, frames // column * column)
    wave = pad_with_silence(wave, (target - 1) * cfg.frame_shift + cfg.frame_length)  # a file < one column
    fbank = compute_fbank(wave, cfg)[:target].to(device_of(model))
    return sequence_scores(model, info, fbank, precision=precision)


def waveform_scores(
    model: nn.Module,
    info: ModelInfo,
    wave: np.ndarray,
    hop_s: float | None = None,
    batch_size: int = 16,
    *,
    precision: str = "fp32",
) -> np.ndarray:
    """Clip-level probabilities ``(C,)`` of a mono waveform at ``info.features.sample_rate``: the mean over
    the checkpoint's own windows (``checkpoint_plan``) every ``hop_s`` (default ``clip_hop_s``), a file
    shorter than one padded with silence to one (a recurrent model: its last step, ``window_scores``)."""
    hop_s = clip_hop_s(info) if hop_s is None else hop_s
    plan = checkpoint_plan(info, hop_s)
    _, per_window = window_scores(model, info, wave, plan, batch_size, precision=precision)
    return per_window.double().mean(dim=0).float().numpy()


def align_targets(clip_set: ClipSet, info: ModelInfo) -> np.ndarray:
    """The clip set's targets re-indexed to the checkpoint's label order (matched by name)."""
    position = {name: i for i, name in enumerate(info.labels)}
    unknown = [name for name in clip_set.labels if name not in position]
    if unknown:
        hint = ""
        if set(unknown) <= {"train", "val", "test"}:
            hint = " (split folders read as classes? point at the split to score, e.g. DIR/test)"
        raise ValueError(
            f"the model does not know the label(s) {unknown[:5]} of dataset {clip_set.name!r}{hint}"
        )
    if clip_set.multi_label != info.multi_label:
        kind = "multi-label" if clip_set.multi_label else "single-label"
        raise ValueError(f"dataset {clip_set.name!r} is {kind}, the model is not")
    mapping = np.array([position[name] for name in clip_set.labels], dtype=np.int64)
    if not clip_set.multi_label:
        return mapping[clip_set.targets()]
    y = np.zeros((len(clip_set.clips), len(info.labels)), dtype=np.float32)
    for i, clip in enumerate(clip_set.clips):
        y[i, mapping[list(clip.targets)]] = 1.0
    return y


def fbank_clip_scores(
    model: nn.Module, info: ModelInfo, x: np.ndarray, batch_size: int = 32, *, precision: str = "fp32"
) -> np.ndarray:
    """Probabilities ``(N, C)`` of un-normalised fixed-length fbanks ``(N, T, F)`` (the training input), on
    the model's device."""
    model.eval()
    device = device_of(model)
    out = [
        scores(model, info, torch.from_numpy(x[i : i + batch_size]).to(device), precision=precision)
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(out).numpy() if out else np.zeros((0, len(info.labels)), dtype=np.float32)


def clip_scores(
    model: nn.Module,
    info: ModelInfo,
    clip_set: ClipSet,
    cache_dir: Path | None,
    batch_size: int = 32,
    *,
    precision: str = "fp32",
) -> np.ndarray:
    """Scores of every clip as ``streamd classify`` scores a file (``waveform_scores``, the one clip rule):
    a clip of one window (padded to the model's ``target_frames`` as in training) in batches; a longer
    clip by the mean of its windows every ``clip_hop_s``; a recurrent model's clip shorter than a window at
    its own last step. ``precision``: as the commands that load a model choose it (``models.precision``)."""
    frames = info.normalization.target_frames
    x = cached_fbanks(clip_set.clips, info.features, cache_dir, frames)
    out = fbank_clip_scores(model, info, x, batch_size, precision=precision)
    for i, clip in enumerate(clip_set.clips):
        length = clip_fbank(Path(clip.path), info.features, cache_dir).shape[0]
        if length > frames or (length < frames and is_recurrent(model)):
            wave = read_audio(clip.path, info.features.sample_rate)
            out[i] = waveform_scores(model, info, wave, precision=precision)
    return out


def evaluate_clip_set(
    model: nn.Module,
    info: ModelInfo,
    clip_set: ClipSet,
    out_dir: Path | None = None,
    cache_dir: Path | None = None,
    title: str = "",
    *,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Metrics of ``model`` on ``clip_set``; with ``out_dir``, also report.json, report.md, confusion.png."""
    if not clip_set.clips:
        raise ValueError(f"dataset {clip_set.name!r} has no clips to evaluate")
    targets = align_targets(clip_set, info)
    scores = clip_scores(model, info, clip_set, cache_dir, precision=precision)
    report = metrics.classification_report(targets, scores, info.labels, info.multi_label)
    if out_dir is not None:
        write_report(report, info.labels, Path(out_dir), title or clip_set.name)
    return report


def write_report(report: dict[str, Any], labels: list[str], out_dir: Path, title: str) -> None:
    """report.json, a markdown summary and the confusion-matrix PNG in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    metrics.plot_confusion_matrix(
        np.array(report["confusion_matrix"]), labels, out_dir / "confusion.png", title
    )
    (out_dir / "report.md").write_text(report_markdown(report, title))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def report_markdown(report: dict[str, Any], title: str) -> str:
    """Headline metrics and the per-class accuracy table as markdown."""
    lines = [
        f"# Evaluation: {title}",
        "",
        f"- examples: {report['num_examples']}",
        f"- accuracy: {_fmt(report['accuracy'])}",
        f"- macro-F1: {_fmt(report['macro_f1'])}",
        f"- mAP: {_fmt(report['mAP'])}",
        "",
        "| class | accuracy | AP |",
        "| --- | --- | --- |",
    ]
    for label, acc in report["per_class_accuracy"].items():
        lines.append(f"| {label} | {_fmt(acc)} | {_fmt(report['per_class_ap'][label])} |")
    return "\n".join(lines) + "\n"


def offline_stream_predictions(
    model: nn.Module,
    info: ModelInfo,
    wave: np.ndarray,
    hop_s: float,
    window_s: float = 5.0,
    *,
    precision: str = "fp32",
) -> list[WindowPrediction]:
    """What a stream predicts, computed offline from the whole file: the plain reference for a replay.

    Windowed models: the windows of ``WindowPlan.from_seconds(window_s, hop_s)`` over the file padded
    with silence to one window (``window_scores``). Recurrent models: one prediction per whole column of
    ``column_frames`` frames spanning that column's samples; a file shorter than one column is completed
    with silence to one (``hop_s`` and ``window_s`` do not apply).
    """
    cfg = info.features
    rate, shift = cfg.sample_rate, cfg.frame_shift
    wave = np.asarray(wave, dtype=np.float32)
    if is_recurrent(model):
        column = int(model.column_frames)
        per_step = recurrent_steps(model, info, wave, precision=precision)
        starts = [k * column * shift for k in range(per_step.shape[0])]
        spans = [(a / rate, (a + (column - 1) * shift + cfg.frame_length) / rate) for a in starts]
    else:
        plan = WindowPlan.from_seconds(window_s, hop_s, cfg)
        starts, per_step = window_scores(model, info, wave, plan, precision=precision)
        spans = [(a / rate, (a + plan.window_samples) / rate) for a in starts]
    best = per_step.argmax(dim=1)
    return [
        WindowPrediction(t0, t1, info.labels[int(b)], float(row[b]))
        for (t0, t1), b, row in zip(spans, best, per_step, strict=True)
    ]
