"""Opening and validating audio files (anything libsndfile reads: wav, flac, ogg, ...).

Every problem becomes an ``AudioInputError`` with one line naming the file, never a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from streamd.errors import AudioInputError


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
