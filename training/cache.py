"""Fbank features computed once per (file, feature settings) and cached as .npy files."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from audio_core.audio_file import READER_VERSION, read_audio
from audio_core.fbank import compute_fbank
from audio_core.windows import pad_with_silence, window_samples_for_frames
from models.atomic_write import write_atomically
from models.common import FeatureConfig
from training.clips import Clip


def file_key(path: Path) -> tuple[str, int, int]:
    """A file as it is now: its resolved path, size and modification time (ns); what the feature cache,
    and the digests of ``training.trained_clips``, are keyed by (``OSError`` when it cannot be read)."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def file_identity(path: Path) -> tuple[str, int, int, int, int]:
    """``file_key`` and the file's inode and change time (ns): what the in-process memos are keyed by, so
    that a file replaced in place (a rename onto it, a copy keeping size and modification time) is a new
    one (``OSError`` when it cannot be read)."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns


def _key(path: Path, cfg: FeatureConfig) -> str:
    ident = json.dumps([*file_key(path), cfg.to_dict(), READER_VERSION], sort_keys=True)
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
    clips: Sequence[Clip],
    cfg: FeatureConfig,
    cache_dir: Path | None,
    num_frames: int,
    start_s: Sequence[float] | None = None,
) -> np.ndarray:
    """Stack of un-normalised fbanks ``(N, num_frames, F)`` float32: each clip's window starting at its
    ``start_s`` seconds (``training.clip_windows``), or its first."""
    out = np.zeros((len(clips), num_frames, cfg.num_mel_bins), dtype=np.float32)
    last: tuple[str, np.ndarray] | None = None  # a clip's windows come one after another: one read each
    for i, clip in enumerate(clips):
        start = 0.0 if start_s is None else start_s[i]
        if last is None or last[0] != str(clip.path):
            last = (str(clip.path), clip_fbank(Path(clip.path), cfg, cache_dir))
        out[i] = window_fbank(Path(clip.path), cfg, cache_dir, num_frames, start, last[1])
    return out


def window_fbank(
    path: Path,
    cfg: FeatureConfig,
    cache_dir: Path | None,
    num_frames: int,
    start_s: float = 0.0,
    fbank: np.ndarray | None = None,
) -> np.ndarray:
    """The window of ``num_frames`` frames of a file from ``start_s`` seconds (the frame nearest, kept
    within the file); a file shorter than a window is padded with silence to one before the fbank
    (``pad_with_silence``: the rule of every command), not cached. ``fbank``: the file's, if read."""
    fbank = clip_fbank(path, cfg, cache_dir) if fbank is None else fbank
    if fbank.shape[0] < num_frames:
        window = pad_with_silence(
            read_audio(path, cfg.sample_rate), window_samples_for_frames(num_frames, cfg)
        )
        fbank = compute_fbank(window, cfg).numpy()
    start = min(round(start_s * cfg.sample_rate / cfg.frame_shift), fbank.shape[0] - num_frames)
    return fbank[start : start + num_frames]
