"""Fbank features computed once per (file, feature settings) and cached as .npy files."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from audio_core.audio_file import read_audio
from audio_core.fbank import compute_fbank
from models.atomic_write import write_atomically
from models.common import FeatureConfig
from training.clips import Clip


def fit_frames(fbank: np.ndarray, num_frames: int) -> np.ndarray:
    """Zero-pad at the end or cut to ``num_frames`` frames (AST's target_length rule)."""
    t = fbank.shape[0]
    if t >= num_frames:
        return fbank[:num_frames]
    pad = np.zeros((num_frames - t, fbank.shape[1]), dtype=fbank.dtype)
    return np.concatenate([fbank, pad], axis=0)


def _key(path: Path, cfg: FeatureConfig) -> str:
    stat = path.stat()
    ident = json.dumps([str(path.resolve()), stat.st_size, stat.st_mtime_ns, cfg.to_dict()], sort_keys=True)
    return hashlib.sha1(ident.encode()).hexdigest()


def clip_fbank(path: Path, cfg: FeatureConfig, cache_dir: Path | None) -> np.ndarray:
    """Un-normalised fbank ``(T, F)`` of one file, from the cache when present."""
    if cache_dir is None:
        return compute_fbank(read_audio(path, cfg.sample_rate), cfg).numpy()
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{_key(path, cfg)}.npy"
    if target.exists():
        return np.load(target)
    fbank = compute_fbank(read_audio(path, cfg.sample_rate), cfg).numpy().astype(np.float32)
    write_atomically(target, lambda tmp: np.save(tmp, fbank))  # safe with runs filling one cache side by side
    return fbank


def cached_fbanks(
    clips: Sequence[Clip], cfg: FeatureConfig, cache_dir: Path | None, num_frames: int
) -> np.ndarray:
    """Stack of un-normalised fbanks ``(N, num_frames, F)`` float32, each padded or cut to ``num_frames``."""
    out = np.zeros((len(clips), num_frames, cfg.num_mel_bins), dtype=np.float32)
    for i, clip in enumerate(clips):
        out[i] = fit_frames(clip_fbank(Path(clip.path), cfg, cache_dir), num_frames)
    return out
