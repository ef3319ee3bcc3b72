"""Evaluation of a checkpoint: clip-level scores and metrics, whole-file scoring, streaming soundscapes.

Whole-file scoring of an in-memory waveform (``waveform_scores``; the plain reference of
``streamd.clip_scoring``, which gives ``streamd classify`` the same scores reading files window by window)
works for any checkpoint:

- windowed models see windows of ``normalization.target_frames`` frames (5 s for ESC-50 models) every
  ``hop_s``; a file shorter than one window is zero-padded (as in training); the last window is
  aligned to the end of the file so that its tail is covered; the file's scores are the mean of the
  windows' probabilities (softmax, or sigmoid for multi-label models);
- recurrent models run ``forward_steps`` once over the whole file (zero-padded to one window when
  shorter) and the same mean is taken over the steps that end where those windows end, i.e. each
  aggregated step has seen at least one window of audio, the way the model was trained.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audio_core.fbank import compute_fbank
from models.common import FeatureConfig, ModelInfo
from training import metrics
from training.cache import cached_fbanks, fit_frames
from training.clips import ClipSet
from training.soundscape import WindowPrediction


def window_starts(num_frames: int, window: int, hop: int) -> list[int]:
    """Start frames of the windows that cover ``num_frames``: every ``hop``, plus one flush with the end."""
    if num_frames <= window:
        return [0]
    starts = list(range(0, num_frames - window + 1, max(1, hop)))
    if starts[-1] != num_frames - window:
        starts.append(num_frames - window)
    return starts


def hop_frames(hop_s: float, features: FeatureConfig) -> int:
    """The hop between whole-file windows in frames: ``hop_s`` rounded to whole frame shifts (at least 1)."""
    return max(1, round(hop_s * 1000.0 / features.frame_shift_ms))


def probabilities(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Sigmoid (multi-label) or softmax over the last dimension."""
    logits = logits.float()
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)


@torch.no_grad()
def fbank_window_scores(
    model: nn.Module, info: ModelInfo, fbank: torch.Tensor, hop_s: float, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Per-window probabilities of an un-normalised fbank ``(T, F)``: (end frames ``(W,)``, ``(W, C)``)."""
    window = info.normalization.target_frames
    hop = hop_frames(hop_s, info.features)
    num_frames = fbank.shape[0]
    starts = window_starts(num_frames, window, hop)
    ends = np.array([min(num_frames, s + window) for s in starts])
    padded = torch.from_numpy(fit_frames(fbank.numpy(), max(num_frames, window)))
    x = info.normalization.apply(padded)
    if getattr(model, "recurrent", False):
        column = int(getattr(model, "column_frames", 1))
        steps = probabilities(model.forward_steps(x.unsqueeze(0))[0], info.multi_label)  # (S, C)
        index = np.clip((np.maximum(ends, window) // column) - 1, 0, steps.shape[0] - 1)
        return ends, steps[torch.from_numpy(index)].numpy()
    out = []
    for i in range(0, len(starts), batch_size):
        batch = torch.stack([x[s : s + window] for s in starts[i : i + batch_size]])  # (B, window, F)
        out.append(probabilities(model(batch), info.multi_label))
    return ends, torch.cat(out).numpy()


def waveform_scores(
    model: nn.Module, info: ModelInfo, wave: np.ndarray, hop_s: float = 2.5, batch_size: int = 16
) -> np.ndarray:
    """Clip-level probabilities ``(C,)`` of a mono waveform at ``info.features.sample_rate``."""
    fbank = compute_fbank(wave, info.features)
    if fbank.shape[0] == 0:
        raise ValueError(f"audio shorter than one {info.features.frame_length_ms:g} ms frame")
    _, scores = fbank_window_scores(model, info, fbank, hop_s, batch_size)
    return scores.mean(axis=0)


def top_labels(scores: np.ndarray, labels: Sequence[str], k: int) -> list[dict[str, Any]]:
    """The ``k`` best ``{"label", "score"}`` pairs, best first."""
    order = np.argsort(-scores, kind="stable")[:k]
    return [{"label": labels[i], "score": float(scores[i])} for i in order]


def align_targets(clip_set: ClipSet, info: ModelInfo) -> np.ndarray:
    """The clip set's targets re-indexed to the checkpoint's label order (matched by name)."""
    position = {name: i for i, name in enumerate(info.labels)}
    unknown = [name for name in clip_set.labels if name not in position]
    if unknown:
        raise ValueError(f"the model does not know the label(s) {unknown[:5]} of dataset {clip_set.name!r}")
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


@torch.no_grad()
def fbank_clip_scores(model: nn.Module, info: ModelInfo, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Probabilities ``(N, C)`` of un-normalised fixed-length fbanks ``(N, T, F)`` (the training input)."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = info.normalization.apply(torch.from_numpy(x[i : i + batch_size]))
        out.append(probabilities(model(xb), info.multi_label))
    return torch.cat(out).numpy() if out else np.zeros((0, len(info.labels)), dtype=np.float32)


def clip_scores(
    model: nn.Module, info: ModelInfo, clip_set: ClipSet, cache_dir: Path | None, batch_size: int = 32
) -> np.ndarray:
    """Scores of every clip, each padded or cut to the model's ``target_frames`` as in training."""
    x = cached_fbanks(clip_set.clips, info.features, cache_dir, info.normalization.target_frames)
    return fbank_clip_scores(model, info, x, batch_size)


def evaluate_clip_set(
    model: nn.Module,
    info: ModelInfo,
    clip_set: ClipSet,
    out_dir: Path | None = None,
    cache_dir: Path | None = None,
    title: str = "",
) -> dict[str, Any]:
    """Metrics of ``model`` on ``clip_set``; with ``out_dir``, also report.json, report.md, confusion.png."""
    if not clip_set.clips:
        raise ValueError(f"dataset {clip_set.name!r} has no clips to evaluate")
    targets = align_targets(clip_set, info)
    scores = clip_scores(model, info, clip_set, cache_dir)
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


@torch.no_grad()
def offline_stream_predictions(
    model: nn.Module, info: ModelInfo, wave: np.ndarray, hop_s: float, window_s: float = 5.0
) -> list[WindowPrediction]:
    """What a stream predicts, computed offline from the whole file: the plain reference for a replay.

    Windowed models: window ``k`` holds the frames of samples ``[k * hop_s, k * hop_s + window_s)``; a
    last window flush with the end (start on the frame grid) covers the tail; a file shorter than one
    window is padded with silence to one window. Recurrent models: one prediction per column of
    ``column_frames`` frames spanning that column's samples, the last column completed with silence
    (``hop_s`` and ``window_s`` do not apply).
    """
    cfg = info.features
    rate, shift = cfg.sample_rate, cfg.frame_shift
    wave = np.asarray(wave, dtype=np.float32)
    if getattr(model, "recurrent", False):
        column = int(model.column_frames)
        frames = cfg.num_frames(wave.size)
        target = max(column, -(-frames // column) * column)
        wave = _pad_to(wave, (target - 1) * shift + cfg.frame_length)
        x = info.normalization.apply(compute_fbank(wave, cfg)[:target])
        scores = probabilities(model.forward_steps(x.unsqueeze(0))[0], info.multi_label)
        starts = [k * column * shift for k in range(target // column)]
        spans = [(a / rate, (a + (column - 1) * shift + cfg.frame_length) / rate) for a in starts]
    else:
        window_n, hop_n = round(window_s * rate), round(hop_s * rate)
        wave = _pad_to(wave, window_n)
        starts = list(range(0, wave.size - window_n + 1, hop_n))
        tail = (wave.size - window_n) // shift * shift
        if tail > starts[-1]:
            starts.append(tail)
        x = info.normalization.apply(compute_fbank(wave, cfg))
        width = cfg.num_frames(window_n)
        windows = [x[a // shift : a // shift + width] for a in starts]
        scores = torch.cat(
            [
                probabilities(model(torch.stack(windows[i : i + 16])), info.multi_label)
                for i in range(0, len(windows), 16)
            ]
        )
        spans = [(a / rate, (a + window_n) / rate) for a in starts]
    best = scores.argmax(dim=1)
    return [
        WindowPrediction(t0, t1, info.labels[int(b)], float(row[b]))
        for (t0, t1), b, row in zip(spans, best, scores, strict=True)
    ]


def _pad_to(wave: np.ndarray, num_samples: int) -> np.ndarray:
    """``wave`` followed by silence up to ``num_samples`` (unchanged if already that long)."""
    if wave.size >= num_samples:
        return wave
    return np.concatenate([wave, np.zeros(num_samples - wave.size, dtype=np.float32)])
