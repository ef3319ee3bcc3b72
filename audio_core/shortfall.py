"""Audio that cannot be read whole: a file that ends before its header says (truncated: a WAV by its
header, ``audio_core.wav_header``, from a file or a pipe; an AIFF, AU or W64 file by its header,
``audio_core.container_length``; an MP3 by its length header), or a file whose decoder stops before its
end (an MPEG file before its last frame, ``audio_core.mpeg_length``; a chained Ogg file after its first
stream, ``audio_core.ogg_chain``). Each is one line naming the file.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import soundfile as sf

from audio_core.container_length import container_missing_seconds
from audio_core.display import display_path
from audio_core.mpeg_length import mpeg_shortfall
from audio_core.ogg_chain import unread_share
from audio_core.wav_header import missing_seconds, stream_missing_seconds

CONVERT = "convert it whole first, e.g. ffmpeg -i FILE out.flac"

if TYPE_CHECKING:
    from audio_core.audio_file import AudioFileInfo


def file_shortfall(fd: int, form: str, frames: int, rate: int) -> tuple[float, str | None]:
    """For a seekable file of libsndfile's ``form`` that decodes to ``frames`` at ``rate``: (seconds its
    header declares beyond its end, what its decoder would leave unread or None)."""
    stops = f"its decoder stops at {frames / rate:.2f} s"
    if form == "MP3":
        missing_s, beyond_s = mpeg_shortfall(fd, frames, rate)
        why = "MP3s joined end to end, or VBR with no length header"
        beyond = f"{stops}, {beyond_s:.2f} s before its last MPEG frame ({why})"
        return missing_s, beyond if beyond_s > 0 else None
    if form == "OGG":
        chained = unread_share(fd)
        if chained is None:
            return 0.0, None
        count, share = chained
        return 0.0, (
            f"{stops}, the end of the first of {count + 1} Ogg streams chained in it, leaving {share:.0%} "
            "of its bytes unread (Ogg files joined end to end, or a stream dump)"
        )
    return missing_seconds(fd) or container_missing_seconds(fd, form), None


def opening_shortfall(info: AudioFileInfo) -> str | None:
    """Why a file's audio cannot be read whole, known on opening (a seekable file), else None: it ends
    before its header says (truncated), or its decoder stops before its end."""
    if info.missing_s > 0:
        return truncation_message(info.path, info.missing_s)
    if info.undecodable is not None:
        return f"{display_path(info.path)}: {info.undecodable}; {CONVERT}"
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
