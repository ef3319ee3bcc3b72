"""Opening, validating and reading audio files (anything libsndfile reads: wav, flac, ogg, ...).

The one reader of audio files: ``read_chunks`` streams a file as mono chunks at the model rate in constant
memory (classify; replay's file source reads through ``open_audio`` too), ``read_audio`` reads it whole
(training, evaluation; the plain reference of ``read_chunks``).

An input is opened exactly once: a regular file, or a non-seekable one (a FIFO, a pipe such as
``/dev/stdin`` or ``<(...)``, or ``-`` for standard input), which is read as it arrives and never reopened.
A non-seekable input must deliver its first bytes within ``wait_s`` seconds; libsndfile reads WAV, AIFF,
AU and OGG from a pipe, while FLAC needs a seekable file.

Every problem (missing, unreadable, no samples, a read error mid-file, NaN or infinite samples, a WAV
that ends before its header says: ``audio_core.wav_header``) becomes an
``AudioInputError`` with one line naming the file, never a traceback. Names are shown by ``display_path``:
bytes that are not UTF-8 appear as ``\\xNN`` escapes, so every message stays valid UTF-8 (and valid JSON).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from audio_core.errors import AudioInputError, TruncatedAudio
from audio_core.resample import StreamingResampler, downmix, resample_offline
from audio_core.wav_header import missing_seconds

STDIN = "-"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # control characters: shown escaped in messages
READ_BLOCK_S = 1.0
# what ``read_audio`` gives for some file changed (a truncated WAV is refused since 2): cached features
# computed from its output are keyed by it, so that an older reader's are not served
READER_VERSION = 2
PIPE_WAIT_S = 3.0  # how long a non-seekable input may take to deliver its first bytes
MIN_SAMPLE_RATE = 1000  # below this a header is wrong (telephone audio is 8 kHz): 1 Hz stalled a stream
MAX_SAMPLE_RATE = 768_000  # above this too (the highest rate audio is made at); 64 MHz cost GBs to read
# beyond this a float sample is not audio scaled to +-1, nor 16/24-bit integers stored as float (up to
# 2^23): from about 1e19 on the filter bank's power overflows to NaN; 1e17 gave scores of no meaning
MAX_SAMPLE_MAGNITUDE = 1e8


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
    missing_s: float = 0.0  # audio its header declares beyond the file's end (a truncated WAV)

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def display_path(path: str | os.PathLike[str] | bytes) -> str:
    """``path`` as text for messages: undecodable bytes shown as ``\\xNN`` (never a lone surrogate)."""
    if str(path) == STDIN:
        return "<stdin>"
    text = os.fsencode(path).decode("utf-8", errors="backslashreplace")
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)  # a newline or escape code stays one line


def refuse_stdin_twice(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Standard input (``-``) can be read once: naming it twice is an error before anything is read."""
    if sum(str(p) == STDIN for p in paths) > 1:
        raise AudioInputError("- (standard input) is named more than once: it can be read only once")


def _open_fd(path: Path) -> int:
    """One ``open`` of ``path`` (or a duplicate of standard input for ``-``), without blocking on a FIFO."""
    name = display_path(path)
    if str(path) == STDIN:
        return os.dup(0)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise AudioInputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise AudioInputError(f"{name}: is a directory, not an audio file") from None
    except PermissionError:
        raise AudioInputError(f"{name}: permission denied") from None
    except OSError as exc:
        raise AudioInputError(f"{name}: cannot open ({exc.strerror})") from None
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise AudioInputError(f"{name}: is a directory, not an audio file")
    return fd


def _wait_readable(fd: int, name: str, wait_s: float) -> None:
    """Wait until a non-seekable input has bytes (or its writer closed); then make reads blocking."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    ready = poller.poll(max(0.0, wait_s) * 1000.0)
    if not ready:
        raise AudioInputError(f"{name}: no data arrived within {wait_s:g} s (is anything writing to it?)")
    if not ready[0][1] & select.POLLIN:  # the writer closed it without writing anything
        raise AudioInputError(f"{name}: empty input (no bytes before the writer closed it)")
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)


def open_audio(path: str | os.PathLike[str], *, wait_s: float = PIPE_WAIT_S) -> sf.SoundFile:
    """Open ``path`` once for reading as float32 frames; the caller closes it."""
    name = display_path(path)
    fd = _open_fd(Path(path))
    try:
        st = os.fstat(fd)
        seekable = stat.S_ISREG(st.st_mode)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.stat(os.devnull).st_rdev:
            raise AudioInputError(f"{name}: empty input ({os.devnull})")
        if not seekable:
            _wait_readable(fd, name, wait_s)
        handle = sf.SoundFile(fd, closefd=True)
    except AudioInputError:
        _close_quietly(fd)
        raise
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        _close_quietly(fd)  # libsndfile may have closed it already
        detail = getattr(exc, "error_string", None) or str(exc).split(": ")[-1]
        hint = "" if seekable else "; from a pipe use WAV, AIFF, AU or OGG"
        raise AudioInputError(f"{name}: unsupported or unreadable audio file ({detail}{hint})") from None
    if not seekable and handle.format == "MP3":  # libsndfile seeks in MP3 while it decodes
        handle.close()
        raise AudioInputError(f"{name}: MP3 cannot be read from a pipe; use WAV, AIFF, AU or OGG")
    if problem := format_problem(handle.samplerate, handle.channels):
        handle.close()
        raise AudioInputError(f"{name}: {problem}")
    return handle


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def audio_info(handle: sf.SoundFile, path: str | os.PathLike[str]) -> AudioFileInfo:
    """Describe an open file; a seekable file with no samples is an error."""
    seekable = bool(handle.seekable())
    info = AudioFileInfo(
        path=Path(path),
        sample_rate=int(handle.samplerate),
        channels=int(handle.channels),
        frames=int(handle.frames) if seekable else 0,
        format=str(handle.format),
        seekable=seekable,
        missing_s=missing_seconds(handle.name) if seekable and isinstance(handle.name, int) else 0.0,
    )
    if seekable and info.frames <= 0:
        raise AudioInputError(f"{display_path(path)}: contains no audio samples")
    return info


def truncation_message(path: str | os.PathLike[str], info: AudioFileInfo) -> str:
    """What a file that ends before its header says is told, once its present audio has been read."""
    return f"{display_path(path)}: the file ends {info.missing_s:.2f} s before its header says (truncated)"


def probe_audio(path: str | os.PathLike[str]) -> AudioFileInfo:
    """Validate ``path`` and describe it (opens and closes it: for seekable files only)."""
    with open_audio(path) as handle:
        return audio_info(handle, path)


def read_frames(
    handle: sf.SoundFile, path: str | os.PathLike[str], frames: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Up to ``frames`` frames ``(n, channels)`` float32 (-1: the rest of the file), into ``out`` if given."""
    try:
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
    path: str | os.PathLike[str], sample_rate: int, block_s: float = READ_BLOCK_S
) -> Iterator[np.ndarray]:
    """Mono float32 chunks of ``path`` at ``sample_rate`` (downmixed, streaming soxr), ``block_s`` each.

    One open: pipes and ``-`` work as well as regular files. A file with no samples, or too few to leave
    one at ``sample_rate``, is an ``AudioInputError`` (raised once its samples are read). A failure after
    some audio was read (a corrupt tail, NaN samples) is a ``TruncatedAudio``, raised once what came
    before it has been yielded whole (the resampler flushed, as replay's stream ends)."""
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
            chunk = resampler.process(downmix(data))
            given += chunk.size
            yield chunk
    if read == 0:
        raise AudioInputError(f"{display_path(path)}: contains no audio samples")
    last = resampler.process(np.zeros(0, dtype=np.float32), last=True)
    if given + last.size == 0:
        raise AudioInputError(none_left_message(path, read, info.sample_rate, sample_rate))
    yield last
    if info.missing_s > 0:  # what it holds was delivered whole, as before any failure part-way
        raise TruncatedAudio(
            truncation_message(path, info), read / info.sample_rate, "; all it holds was read"
        )


def read_audio(path: str | os.PathLike[str], sample_rate: int = 16000) -> np.ndarray:
    """The whole file as mono float32 at ``sample_rate`` (channel mean, soxr over the whole signal)."""
    with open_audio(path) as handle:
        info = audio_info(handle, path)
        data = read_frames(handle, path, -1)
    if data.shape[0] == 0:
        raise AudioInputError(f"{display_path(path)}: contains no audio samples")
    if info.missing_s > 0:  # as a read error part-way: not a whole clip
        raise AudioInputError(truncation_message(path, info))
    check_finite(path, data, 0, info.sample_rate)
    mono = resample_offline(downmix(data), info.sample_rate, sample_rate)
    if mono.size == 0:  # as read_chunks: not a clip of silence
        raise AudioInputError(none_left_message(path, data.shape[0], info.sample_rate, sample_rate))
    return np.ascontiguousarray(mono, dtype=np.float32)
