"""Opening, validating and reading audio files (anything libsndfile reads: wav, flac, ogg, ...).

The one reader of audio files: ``read_chunks`` streams a file as mono chunks at the model rate in constant
memory (classify; replay's file source reads through ``open_audio`` too), ``read_audio`` reads it whole
(training, evaluation; the plain reference of ``read_chunks``).

An input is opened exactly once: a regular file, or a non-seekable one (a FIFO, a pipe such as
``/dev/stdin`` or ``<(...)``, or ``-`` for standard input), which is read as it arrives and never reopened.
A non-seekable input must deliver its first bytes within ``wait_s`` seconds (``audio_core.input_fd``);
libsndfile reads WAV, AIFF, AU and OGG from a pipe, while FLAC needs a seekable file, and MP3, RF64 and
CAF are refused (``PIPE_UNREADABLE``). A WAV file whose header says no length is read to its end
(``audio_core.unsized_wav``); an MPEG file whose decoder would stop before its last frame (MP3s joined
end to end, VBR with no length header) is refused by name (``audio_core.mpeg_length``).

Every problem (missing, unreadable, no samples, a read error mid-file, NaN or infinite samples, a WAV
or MP3 that ends before its header says, from a file or a pipe: ``audio_core.wav_header``) becomes an
``AudioInputError`` with one line naming the file, never a traceback. Names are shown by ``display_path``:
bytes that are not UTF-8 appear as ``\\xNN`` escapes, so every message stays valid UTF-8 (and valid JSON).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from audio_core.digital_silence import SignalWatch
from audio_core.display import display_path
from audio_core.errors import AudioInputError, TruncatedAudio
from audio_core.input_fd import STDIN, close_quietly, more_follows, open_fd, wait_readable
from audio_core.mpeg_read import MPEG_FORMATS, read_on
from audio_core.resample import StreamingResampler, downmix, resample_offline
from audio_core.shortfall import file_shortfall, shortfall_after_read
from audio_core.unsized_wav import reopen_unsized
from audio_core.wav_header import WAV_FORMATS

READ_BLOCK_S = 1.0
# what ``read_audio`` gives for some file changed (a truncated WAV is refused since 2; an MP3, AIFF, AU or
# W64 file cut short, an MP3 read short and a chained Ogg since 3): cached features computed from its
# output are keyed by it, so that an older reader's are not served
READER_VERSION = 3
PIPE_WAIT_S = 3.0  # how long a non-seekable input may take to deliver its first bytes
MIN_SAMPLE_RATE = 1000  # below this a header is wrong (telephone audio is 8 kHz): 1 Hz stalled a stream
MAX_SAMPLE_RATE = 768_000  # above this too (the highest rate audio is made at); 64 MHz cost GBs to read
# beyond this a float sample is not audio scaled to +-1, nor 16/24-bit integers stored as float (up to
# 2^23): from about 1e19 on the filter bank's power overflows to NaN; 1e17 gave scores of no meaning
MAX_SAMPLE_MAGNITUDE = 1e8
# formats libsndfile cannot read from a pipe: it seeks in them (MP3 failed mid-file after results, RF64
# lost 4 frames and shifted the rest, CAF gave no samples); W64, AIFF, AU and OGG read whole
PIPE_UNREADABLE = ("MP3", "RF64", "CAF")


def format_problem(rate: int, channels: int) -> str | None:
    """Why a stream of ``rate`` Hz and ``channels`` channels cannot be audio, or None: the one rule of
    files and network streams."""
    if rate <= 0 or channels <= 0:
        return f"invalid audio header (rate {rate}, {channels} channels)"
    if rate < MIN_SAMPLE_RATE:
        return f"sample rate {rate} Hz is below {MIN_SAMPLE_RATE} Hz: not audio (a wrong header?)"
    if rate > MAX_SAMPLE_RATE:
        return f"sample rate {rate} Hz is above {MAX_SAMPLE_RATE} Hz: not audio (a wrong header?)"
    return None


@dataclass(frozen=True)
class AudioFileInfo:
    """What a file holds: native rate, channel count and length in frames (samples per channel).

    ``frames`` is 0 when it is not known in advance (a pipe).
    """

    path: Path
    sample_rate: int
    channels: int
    frames: int
    format: str
    seekable: bool = True
    missing_s: float = 0.0  # audio its header declares beyond the file's end (a truncated WAV or MP3)
    undecodable: str | None = None  # what its decoder would leave unread (joined MP3s, chained Ogg)

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def refuse_stdin_twice(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Standard input (``-``) can be read once: naming it twice is an error before anything is read."""
    if sum(str(p) == STDIN for p in paths) > 1:
        raise AudioInputError("- (standard input) is named more than once: it can be read only once")


def _unreadable(name: str, exc: Exception, seekable: bool) -> AudioInputError:
    """The one line of a file libsndfile cannot open (from a pipe: which formats it can)."""
    detail = getattr(exc, "error_string", None) or str(exc).split(": ")[-1]
    hint = "" if seekable else "; from a pipe or device use WAV, AIFF, AU or OGG"
    return AudioInputError(f"{name}: unsupported or unreadable audio file ({detail}{hint})")


def open_audio(path: str | os.PathLike[str], *, wait_s: float = PIPE_WAIT_S) -> sf.SoundFile:
    """Open ``path`` once for reading as float32 frames; the caller closes it."""
    name = display_path(path)
    fd = open_fd(Path(path), name)
    seekable = True
    try:
        st = os.fstat(fd)
        seekable = stat.S_ISREG(st.st_mode)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.stat(os.devnull).st_rdev:
            raise AudioInputError(f"{name}: empty input ({os.devnull})")
        if seekable and st.st_size == 0:  # as an empty pipe is said, not "format not recognised"
            raise AudioInputError(f"{name}: empty file (0 bytes)")
        if not seekable:
            wait_readable(fd, name, wait_s)
        handle = sf.SoundFile(fd, closefd=True)
    except AudioInputError:
        close_quietly(fd)
        raise
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        close_quietly(fd)  # libsndfile may have closed it already
        raise _unreadable(name, exc, seekable) from None
    if seekable:  # its header may say no length: read to its end (``fd`` is the handle's until closed)
        try:
            handle = reopen_unsized(handle, fd)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise _unreadable(name, exc, seekable) from None
    if not seekable and handle.frames == 0 and handle.format in WAV_FORMATS and more_follows(fd, wait_s):
        handle.close()  # a header of sizes 0 (length unknown): libsndfile reads none of it from a pipe
        raise AudioInputError(
            f"{name}: its WAV header says 0 bytes of audio (a length it did not know) and libsndfile reads "
            "none from a pipe; give it as a file, where it is read to its end"
        )
    if not seekable and (form := str(handle.format)) in PIPE_UNREADABLE:
        handle.close()
        raise AudioInputError(f"{name}: {form} cannot be read from a pipe; use WAV, AIFF, AU or OGG")
    if problem := format_problem(handle.samplerate, handle.channels):
        handle.close()
        raise AudioInputError(f"{name}: {problem}")
    return handle


def audio_info(handle: sf.SoundFile, path: str | os.PathLike[str]) -> AudioFileInfo:
    """Describe an open file; a seekable file with no samples is an error."""
    seekable = bool(handle.seekable())
    fd = handle.name if seekable and isinstance(handle.name, int) else None
    missing_s, undecodable = 0.0, None
    if fd is not None:
        missing_s, undecodable = file_shortfall(
            fd, str(handle.format), int(handle.frames), int(handle.samplerate)
        )
    info = AudioFileInfo(
        path=Path(path),
        sample_rate=int(handle.samplerate),
        channels=int(handle.channels),
        frames=int(handle.frames) if seekable else 0,
        format=str(handle.format),
        seekable=seekable,
        missing_s=missing_s,
        undecodable=undecodable,
    )
    if seekable and info.frames <= 0:
        raise AudioInputError(f"{display_path(path)}: contains no audio samples")
    return info


def probe_audio(path: str | os.PathLike[str]) -> AudioFileInfo:
    """Validate ``path`` and describe it (opens and closes it: for seekable files only)."""
    with open_audio(path) as handle:
        return audio_info(handle, path)


def read_frames(
    handle: sf.SoundFile, path: str | os.PathLike[str], frames: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Up to ``frames`` frames ``(n, channels)`` float32 (-1: the rest of the file), into ``out`` if given.
    MPEG audio read in blocks is read on without a seek between them (``read_on``)."""
    try:
        if frames >= 0 and handle.seekable() and str(handle.format).upper() in MPEG_FORMATS:
            return read_on(handle, frames, out)
        return handle.read(frames, dtype="float32", always_2d=True, out=out)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioInputError(f"{display_path(path)}: read error ({type(exc).__name__}: {exc})") from None


def check_finite(path: str | os.PathLike[str], data: np.ndarray, offset: int, sample_rate: int) -> None:
    """NaN or infinite samples in ``data`` (starting at frame ``offset``), or samples beyond
    ``MAX_SAMPLE_MAGNITUDE``, are an error naming the time."""
    finite = np.isfinite(data).all(axis=1)
    if not finite.all():
        at_s = (offset + int(np.argmin(finite))) / sample_rate
        raise AudioInputError(
            f"{display_path(path)}: the audio holds NaN or infinite samples (at {at_s:.3f} s)"
        )
    huge = (np.abs(data) > MAX_SAMPLE_MAGNITUDE).any(axis=1)
    if huge.any():
        at_s = (offset + int(np.argmax(huge))) / sample_rate
        raise AudioInputError(
            f"{display_path(path)}: the audio holds samples beyond +-{MAX_SAMPLE_MAGNITUDE:g} "
            f"(at {at_s:.3f} s): not audio"
        )


def none_left_message(path: str | os.PathLike[str], read: int, rate: int, sample_rate: int) -> str:
    """What a file too short to leave one sample once resampled is told (read whole or streamed)."""
    return f"{display_path(path)}: {read} sample(s) at {rate} Hz leave none at {sample_rate} Hz"


def unread_note(frames: int, read: int, rate: int) -> str:
    """``; its last N s were not classified`` after a failure, when the file's length (``frames``) is
    known: the one wording of replay and ``classify --windows``."""
    left = frames - read
    if not frames or left <= 0:
        return ""
    return f"; its last {left / rate:.2f} s were not classified"


def read_chunks(
    path: str | os.PathLike[str],
    sample_rate: int,
    block_s: float = READ_BLOCK_S,
    signal: SignalWatch | None = None,
) -> Iterator[np.ndarray]:
    """Mono float32 chunks of ``path`` at ``sample_rate`` (downmixed, streaming soxr), ``block_s`` each.

    One open: pipes and ``-`` work as well as regular files. A file with no samples, or too few to leave
    one at ``sample_rate``, is an ``AudioInputError`` (raised once its samples are read). A failure after
    some audio was read (a corrupt tail, NaN samples) is a ``TruncatedAudio``, raised once what came
    before it has been yielded whole (the resampler flushed, as replay's stream ends). ``signal`` is given
    the downmix at the file's own rate (the resampler rings at a constant's ends: that is not a signal)."""
    with open_audio(path) as handle:
        info = audio_info(handle, path)
        resampler = StreamingResampler(info.sample_rate, sample_rate)
        block = max(1, round(block_s * info.sample_rate))
        read = given = 0
        while True:
            try:
                data = read_frames(handle, path, block)
                check_finite(path, data, read, info.sample_rate)
            except AudioInputError as exc:
                if read == 0:
                    raise
                last = resampler.process(np.zeros(0, dtype=np.float32), last=True)
                if last.size:
                    yield last
                unread = unread_note(info.frames, read, info.sample_rate)
                raise TruncatedAudio(str(exc), read / info.sample_rate, unread) from None
            if data.shape[0] == 0:
                break
            read += data.shape[0]
            mono = downmix(data)
            if signal is not None:
                signal.add(mono)
            chunk = resampler.process(mono)
            given += chunk.size
            yield chunk
        shortfall = shortfall_after_read(handle, info, read)
    if read == 0:
        raise AudioInputError(f"{display_path(path)}: contains no audio samples")
    last = resampler.process(np.zeros(0, dtype=np.float32), last=True)
    if given + last.size == 0:
        raise AudioInputError(none_left_message(path, read, info.sample_rate, sample_rate))
    yield last
    if shortfall is not None:  # what could be read was delivered whole, as before any failure part-way
        whole = "; all it holds was read" if info.undecodable is None else ""  # else: more it could not
        raise TruncatedAudio(shortfall, read / info.sample_rate, whole)


def read_audio(path: str | os.PathLike[str], sample_rate: int = 16000) -> np.ndarray:
    """The whole file as mono float32 at ``sample_rate`` (channel mean, soxr over the whole signal)."""
    with open_audio(path) as handle:
        info = audio_info(handle, path)
        data = read_frames(handle, path, -1)
        shortfall = shortfall_after_read(handle, info, data.shape[0])
    if data.shape[0] == 0:
        raise AudioInputError(f"{display_path(path)}: contains no audio samples")
    if shortfall is not None:  # as a read error part-way: not a whole clip
        raise AudioInputError(shortfall)
    check_finite(path, data, 0, info.sample_rate)
    mono = resample_offline(downmix(data), info.sample_rate, sample_rate)
    if mono.size == 0:  # as read_chunks: not a clip of silence
        raise AudioInputError(none_left_message(path, data.shape[0], info.sample_rate, sample_rate))
    return np.ascontiguousarray(mono, dtype=np.float32)
