"""Audio that cannot be read whole: a file that ends before its header says (truncated: a WAV by its
header, ``audio_core.wav_header``, from a file or a pipe; an MP3 by its length header), or an MPEG file
whose decoder stops before its last frame (``audio_core.mpeg_length``). Each is one line naming the file.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import soundfile as sf

from audio_core.display import display_path
from audio_core.wav_header import stream_missing_seconds

if TYPE_CHECKING:
    from audio_core.audio_file import AudioFileInfo


def opening_shortfall(info: AudioFileInfo) -> str | None:
    """Why a file's audio cannot be read whole, known on opening (a seekable file), else None: it ends
    before its header says (truncated), or its decoder stops before its last frame."""
    if info.missing_s > 0:
        return truncation_message(info.path, info.missing_s)
    if info.undecodable_s > 0:
        return (
            f"{display_path(info.path)}: its decoder stops at {info.duration_s:.2f} s, "
            f"{info.undecodable_s:.2f} s before its last MPEG frame (MP3s joined end to end, or VBR with "
            "no length header); convert it whole first, e.g. ffmpeg -i FILE out.flac"
        )
    return None


def shortfall_after_read(handle: sf.SoundFile, info: AudioFileInfo, frames_read: int) -> str | None:
    """Why the ``frames_read`` that were there are not the whole of the audio, else None: known on opening
    for a file (``opening_shortfall``), once its last frame was read for a pipe (a truncated WAV)."""
    if info.seekable:
        return opening_shortfall(info)
    form, subtype, declared = str(handle.format), str(handle.subtype), int(handle.frames)
    missing_s = stream_missing_seconds(form, subtype, info.channels, info.sample_rate, declared, frames_read)
    return truncation_message(info.path, missing_s) if missing_s > 0 else None


def truncation_message(path: str | os.PathLike[str], missing_s: float) -> str:
    """What a file that ends ``missing_s`` before its header says is told, once its audio has been read."""
    return f"{display_path(path)}: the file ends {missing_s:.2f} s before its header says (truncated)"
