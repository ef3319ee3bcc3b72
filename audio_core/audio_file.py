"""Opening, validating and reading audio files (anything libsndfile reads: wav, flac, ogg, ...).

The one reader of audio files: ``read_chunks`` streams a file as mono chunks at the model rate in constant
memory (classify, replay's file source reads through ``open_audio`` too), ``read_audio`` reads it whole
(training, evaluation; the plain reference of ``read_chunks``). Every problem (missing, unreadable, no
samples, a read error mid-file, NaN or infinite samples) becomes an ``AudioInputError`` with one line
naming the file, never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from audio_core.errors import AudioInputError
from audio_core.resample import StreamingResampler, downmix, resample_offline

READ_BLOCK_S = 1.0


@dataclass(frozen=True)
class AudioFileInfo:
    """What a file holds: native rate, channel count and length in frames (samples per channel)."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioInputError(f"{path}: no such file")
    if path.is_dir():
        raise AudioInputError(f"{path}: is a directory, not an audio file")
    if not os.access(path, os.R_OK):
        raise AudioInputError(f"{path}: permission denied")


def open_audio(path: str | Path) -> sf.SoundFile:
    """Open ``path`` for reading as float32 frames; the caller closes it."""
    path = Path(path)
    _check_path(path)
    try:
        handle = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        detail = getattr(exc, "error_string", None) or str(exc).split(": ")[-1]
        raise AudioInputError(f"{path}: unsupported or unreadable audio file ({detail})") from None
    if handle.samplerate <= 0 or handle.channels <= 0:
        handle.close()
        raise AudioInputError(
            f"{path}: invalid audio header (rate {handle.samplerate}, {handle.channels} channels)"
        )
    return handle


def probe_audio(path: str | Path) -> AudioFileInfo:
    """Validate ``path`` and describe it; a file with no samples is an error."""
    path = Path(path)
    with open_audio(path) as handle:
        info = AudioFileInfo(
            path=path,
            sample_rate=int(handle.samplerate),
            channels=int(handle.channels),
            frames=int(handle.frames),
            format=str(handle.format),
        )
    if info.frames <= 0:
        raise AudioInputError(f"{path}: contains no audio samples")
    return info


def read_frames(handle: sf.SoundFile, path: Path, frames: int, out: np.ndarray | None = None) -> np.ndarray:
    """Up to ``frames`` frames ``(n, channels)`` float32 (-1: the rest of the file), into ``out`` if given."""
    try:
        return handle.read(frames, dtype="float32", always_2d=True, out=out)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioInputError(f"{path}: read error ({type(exc).__name__}: {exc})") from None


def check_finite(path: str | Path, data: np.ndarray, offset: int, sample_rate: int) -> None:
    """NaN or infinite samples in ``data`` (starting at frame ``offset``) are an error naming the time."""
    finite = np.isfinite(data).all(axis=1)
    if not finite.all():
        at_s = (offset + int(np.argmin(finite))) / sample_rate
        raise AudioInputError(f"{path}: the audio holds NaN or infinite samples (at {at_s:.3f} s)")


def read_chunks(path: str | Path, sample_rate: int, block_s: float = READ_BLOCK_S) -> Iterator[np.ndarray]:
    """Mono float32 chunks of ``path`` at ``sample_rate`` (downmixed, streaming soxr), ``block_s`` each."""
    path = Path(path)
    info = probe_audio(path)
    resampler = StreamingResampler(info.sample_rate, sample_rate)
    block = max(1, round(block_s * info.sample_rate))
    read = 0
    with open_audio(path) as handle:
        while True:
            data = read_frames(handle, path, block)
            if data.shape[0] == 0:
                break
            check_finite(path, data, read, info.sample_rate)
            read += data.shape[0]
            yield resampler.process(downmix(data))
    yield resampler.process(np.zeros(0, dtype=np.float32), last=True)


def read_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """The whole file as mono float32 at ``sample_rate`` (channel mean, soxr over the whole signal)."""
    path = Path(path)
    info = probe_audio(path)
    with open_audio(path) as handle:
        data = read_frames(handle, path, -1)
    check_finite(path, data, 0, info.sample_rate)
    mono = resample_offline(downmix(data), info.sample_rate, sample_rate)
    return np.ascontiguousarray(mono, dtype=np.float32)
