"""A generated catalogue of bad, odd and valid audio files, each with the outcome streamd must give.

Every file is made from one real recording (or is deliberately not audio at all). An entry either
``works`` (replay and classify succeed; ``same_audio``: it decodes to the very same 16 kHz mono signal,
so its scores must equal the original's) or fails with one clear line that names the file and contains
``message``. ``unprivileged`` entries fail only for a user without root's override of file permissions
(run those through ``unprivileged_prefix()``). ``CATALOGUE`` is static, so tests can be parametrized by
entry name; ``build_catalogue`` writes the files.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SHORT_CLIP_S = 1.2  # shorter than one 5-s window
Writer = Callable[[Path, np.ndarray, int], None]


@dataclass(frozen=True)
class CatalogueEntry:
    """One file and what streamd must do with it."""

    name: str
    works: bool
    message: str = ""  # failures: a fragment of the error line; successes: of a status note ("" = none)
    same_audio: bool = False
    unprivileged: bool = False
    write: Writer | None = None  # None: the file must not exist

    def path(self, root: Path) -> Path:
        return root / self.name

    def __str__(self) -> str:
        return self.name


# -- writers ---------------------------------------------------------------------------------------------


def _wav_bytes(audio: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, subtype=subtype, format="WAV")
    return buf.getvalue()


def _flac_bytes(audio: np.ndarray, rate: int) -> bytes:
    return _encoded(audio, rate, "FLAC", "PCM_16")


def _encoded(audio: np.ndarray, rate: int, form: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, subtype=subtype, format=form)
    return buf.getvalue()


def _twice(form: str, subtype: str | None = None) -> Callable[[np.ndarray, int], bytes]:
    """Two files of the clip joined end to end (``cat a b``): MP3s, or a chained Ogg."""
    return lambda audio, rate: _encoded(audio, rate, form, subtype) * 2


def _corrupt(data: bytes, start: int, length: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    out[start : start + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    return bytes(out)


def _bytes(make: Callable[[np.ndarray, int], bytes]) -> Writer:
    return lambda path, audio, rate: path.write_bytes(make(audio, rate))


def _soundfile(transform: Callable[[np.ndarray, int], tuple[np.ndarray, int]], **kw: str) -> Writer:
    def write(path: Path, audio: np.ndarray, rate: int) -> None:
        data, out_rate = transform(audio, rate)
        sf.write(path, data, out_rate, **kw)

    return write


def _directory(path: Path, audio: np.ndarray, rate: int) -> None:
    path.mkdir()


def _unreadable(path: Path, audio: np.ndarray, rate: int) -> None:
    path.write_bytes(_wav_bytes(audio, rate))
    path.chmod(0)


def _header_only(path: Path, audio: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:  # a valid WAV header and zero frames
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)


def _mp4(audio: np.ndarray, rate: int) -> bytes:
    """The start of an MPEG-4 audio file (an ``ftyp`` box, then an ``mdat``): no format libsndfile reads."""
    ftyp = b"ftypM4A \x00\x00\x02\x00M4A mp42isom"
    mdat = b"mdat" + bytes(2048)
    return (len(ftyp) + 4).to_bytes(4, "big") + ftyp + (len(mdat) + 4).to_bytes(4, "big") + mdat


def _with_nan(audio: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    out = audio.copy()
    out[1000:1010] = np.nan
    out[5000] = np.inf
    return out, rate


def _far_too_loud(audio: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """Finite float samples far beyond full scale: the filter bank's power overflowed to NaN scores."""
    return audio * np.float32(1e20), rate


def _same(audio: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    return audio, rate


def _resampled(target: int) -> Callable[[np.ndarray, int], tuple[np.ndarray, int]]:
    def make(audio: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
        if target == rate:
            return audio, rate
        return soxr.resample(audio, rate, target, quality="VHQ").astype(np.float32), target

    return make


def _channels(n: int) -> Callable[[np.ndarray, int], tuple[np.ndarray, int]]:
    def make(audio: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
        gains = np.linspace(0.5, 1.5, n) if n > 1 else np.ones(1)  # mean gain 1: the downmix is the clip
        return (audio[:, None] * gains[None, :]).astype(np.float32), rate

    return make


def _short(audio: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    return audio[: round(SHORT_CLIP_S * rate)], rate


def _truncated_data(audio: np.ndarray, rate: int) -> bytes:
    data = _wav_bytes(audio, rate)
    return data[: 44 + (len(data) - 44) // 2]  # the header promises twice what is there


# -- the catalogue --------------------------------------------------------------------------------------

_BAD = [
    CatalogueEntry("missing.wav", False, "no such file"),
    CatalogueEntry("a_directory.wav", False, "is a directory", write=_directory),
    CatalogueEntry("permission_denied.wav", False, "permission denied", unprivileged=True, write=_unreadable),
    CatalogueEntry("empty.wav", False, "empty file (0 bytes)", write=lambda p, a, r: p.write_bytes(b"")),
    CatalogueEntry("zero_samples.wav", False, "no audio samples", write=_header_only),
    CatalogueEntry(
        "not_audio.wav", False, "unreadable", write=lambda p, a, r: p.write_text("not audio at all\n" * 40)
    ),
    CatalogueEntry(
        "truncated_header.wav", False, "unreadable", write=_bytes(lambda a, r: _wav_bytes(a, r)[:30])
    ),
    CatalogueEntry(
        "corrupt_header.wav",
        False,
        "unreadable",
        write=_bytes(lambda a, r: _corrupt(_wav_bytes(a, r), 20, 16, 1)),
    ),
    CatalogueEntry(
        "truncated.flac",
        False,
        "read error",
        write=_bytes(lambda a, r: (b := _flac_bytes(a, r))[: len(b) // 2]),
    ),
    CatalogueEntry(
        "corrupt.flac",
        False,
        "read error",
        write=_bytes(lambda a, r: _corrupt(b := _flac_bytes(a, r), len(b) // 2, 4096, 2)),
    ),
    CatalogueEntry("unsupported_container.m4a", False, "unreadable", write=_bytes(_mp4)),
    CatalogueEntry(  # its 2.5 s are classified, then it ends as a cut FLAC does
        "truncated_data.wav", False, "before its header says", write=_bytes(_truncated_data)
    ),
    CatalogueEntry(  # libsndfile cut its frame count to what is there: read as a shorter whole file
        "truncated_data.aiff",
        False,
        "before its header says",
        write=_bytes(lambda a, r: (b := _encoded(a, r, "AIFF", "PCM_16"))[: len(b) // 2]),
    ),
    CatalogueEntry(  # the decoder stopped at the first file's end: half the audio, unsaid
        "joined.mp3", False, "its decoder stops at", write=_bytes(_twice("MP3"))
    ),
    CatalogueEntry("chained.ogg", False, "ogg streams chained", write=_bytes(_twice("OGG", "VORBIS"))),
    CatalogueEntry(  # a header claiming 1 Hz: once accepted, a stream that never produced a window
        "rate_1hz_header.wav", False, "below 1000 hz", write=_bytes(lambda a, r: _wav_bytes(a[:64000], 1))
    ),
    CatalogueEntry("nan_inf_samples.wav", False, "nan", write=_soundfile(_with_nan, subtype="FLOAT")),
    CatalogueEntry(
        "far_too_loud.wav", False, "samples beyond", write=_soundfile(_far_too_loud, subtype="FLOAT")
    ),
    CatalogueEntry(  # a header claiming 64 MHz: replay took GBs of memory for a 5-s file
        "rate_64mhz_header.wav",
        False,
        "above 768000 hz",
        write=_bytes(lambda a, r: _wav_bytes(a, 64_000_000)),
    ),
]

_DEPTHS = {"u8": "PCM_U8", "s16": "PCM_16", "s24": "PCM_24", "s32": "PCM_32", "f32": "FLOAT", "f64": "DOUBLE"}
_GOOD = [
    *(
        CatalogueEntry(
            f"depth_{tag}.wav", True, same_audio=tag != "u8", write=_soundfile(_same, subtype=subtype)
        )
        for tag, subtype in _DEPTHS.items()
    ),
    *(
        CatalogueEntry(f"rate_{rate}.wav", True, write=_soundfile(_resampled(rate), subtype="FLOAT"))
        for rate in (8000, 11025, 22050, 32000, 44100, 48000, 96000)
    ),
    *(
        CatalogueEntry(
            f"channels_{n}.wav", True, same_audio=True, write=_soundfile(_channels(n), subtype="FLOAT")
        )
        for n in range(1, 9)
    ),
    CatalogueEntry("flac_16.flac", True, same_audio=True, write=_soundfile(_same, subtype="PCM_16")),
    CatalogueEntry("ogg_vorbis.ogg", True, write=_soundfile(_same, format="OGG", subtype="VORBIS")),
    CatalogueEntry("aiff_16.aiff", True, same_audio=True, write=_soundfile(_same, subtype="PCM_16")),
    CatalogueEntry("mpeg_layer3.mp3", True, write=_soundfile(_same, format="MP3")),
    CatalogueEntry("shorter_than_window.wav", True, "padded", write=_soundfile(_short, subtype="FLOAT")),
]

CATALOGUE: list[CatalogueEntry] = _BAD + _GOOD
BY_NAME = {entry.name: entry for entry in CATALOGUE}


def build_catalogue(root: Path, audio: np.ndarray, rate: int = 16000) -> Path:
    """Write every entry's file into ``root`` from ``audio`` (a real mono clip at ``rate``); returns root."""
    root.mkdir(parents=True, exist_ok=True)
    audio = np.asarray(audio, dtype=np.float32)
    for entry in CATALOGUE:
        if entry.write is not None:
            entry.write(entry.path(root), audio, rate)
    return root


def restore_permissions(root: Path) -> None:
    """Make the catalogue removable again (the permission-denied file has mode 000)."""
    for entry in CATALOGUE:
        path = entry.path(root)
        if entry.unprivileged and path.exists():
            path.chmod(0o644)


def unprivileged_prefix() -> list[str] | None:
    """A command prefix under which file permissions apply, or None where none is available.

    Root bypasses file permissions; ``unshare --user`` runs a command in a user namespace where that
    override does not reach the files. Other users need no prefix.
    """
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    probe = subprocess.run(
        [unshare, "--user", "true"], capture_output=True, timeout=10, stdin=subprocess.DEVNULL
    )
    return [unshare, "--user"] if probe.returncode == 0 else None


def write_long_wav(path: Path, audio: np.ndarray, rate: int, hours: float, chunk_s: float = 60.0) -> Path:
    """An ``hours``-long 16-bit mono WAV of ``audio`` (at ``rate``) repeated, written chunk by chunk."""
    total = round(hours * 3600 * rate)
    reps = int(np.ceil(chunk_s * rate / len(audio)))
    chunk = np.tile(np.asarray(audio, dtype=np.float32), reps)[: round(chunk_s * rate)]
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16", format="WAV") as f:
        written = 0
        while written < total:
            n = min(len(chunk), total - written)
            f.write(chunk[:n])
            written += n
    return path
