"""What the headers of AIFF, AU and W64 files promise about their length, as ``audio_core.wav_header`` does
for WAV: libsndfile cuts its frame count down to the bytes a file holds without a word, so a recording cut
short would be read as a shorter whole one. Each reader takes an open file's descriptor (its position is
not moved) and returns ``(declared bytes of audio, bytes present, bytes per second, bytes per frame)``,
or None where the header says no length or an encoding whose size does not follow from its frames;
``container_missing_seconds`` weighs them by the one rule of WAV files (``shortfall_seconds``).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator

from audio_core.wav_header import UNKNOWN_SIZE, UNKNOWN_SIZE_64, shortfall_seconds

Sizes = tuple[int, int, int, int]
MAX_CHUNKS = 64  # chunks read before the audio (a header that never reaches it is left to libsndfile)
# sox writes 0x7F000000 as an AIFF's SSND size when it cannot seek back (to a pipe): length unknown
AIFF_UNKNOWN_SIZE = 0x7F000000
# AU encodings -> bytes per sample: mu-law, 8/16/24/32-bit PCM, float, double, A-law
_AU_BYTES = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}
# AIFC compression types of uncompressed or one-byte-per-sample audio -> bytes per sample (None: the
# COMM chunk's sample size says)
_AIFC_BYTES = {
    b"NONE": None, b"twos": None, b"sowt": None, b"raw ": None, b"in24": 3, b"in32": 4, b"fl32": 4,
    b"FL32": 4, b"fl64": 8, b"FL64": 8, b"ulaw": 1, b"ULAW": 1, b"alaw": 1, b"ALAW": 1,
}  # fmt: skip


def _extended(raw: bytes) -> float:
    """An 80-bit IEEE extended float (AIFF's sample rate)."""
    exponent, mantissa = struct.unpack(">HQ", raw)
    if exponent == 0 and mantissa == 0:
        return 0.0
    sign = -1.0 if exponent & 0x8000 else 1.0
    return sign * mantissa * 2.0 ** ((exponent & 0x7FFF) - 16383 - 63)


def _chunks(
    fd: int, offset: int, head: int, size_of: Callable[[bytes], int], step: Callable[[int], int]
) -> Iterator[tuple[int, bytes, int]]:
    """(offset, name, size) of each chunk from ``offset`` on (at most ``MAX_CHUNKS``): a ``head``-byte
    header naming it in its first 4 bytes, its size read by ``size_of``, the next one ``step(size)`` on."""
    for _ in range(MAX_CHUNKS):
        chunk = os.pread(fd, head, offset)
        if len(chunk) < head:
            return
        size = size_of(chunk)
        yield offset, chunk[:4], size
        offset += step(size)


def aiff_sizes(fd: int) -> Sizes | None:
    """AIFF / AIFC: the SSND chunk's audio bytes against the bytes after its start."""
    head = os.pread(fd, 12, 0)
    if len(head) < 12 or head[:4] != b"FORM" or head[8:12] not in (b"AIFF", b"AIFC"):
        return None
    frame_bytes, rate = 0, 0.0
    chunks = _chunks(fd, 12, 8, lambda c: struct.unpack(">I", c[4:8])[0], lambda n: 8 + n + (n & 1))
    for offset, name, size in chunks:
        if name == b"COMM":
            body = os.pread(fd, 22, offset + 8)
            if len(body) < 18:
                return None
            channels, _, bits = struct.unpack(">hIh", body[:8])
            per_sample = _AIFC_BYTES.get(body[18:22], 0) if head[8:12] == b"AIFC" else None
            frame_bytes = channels * (per_sample if per_sample is not None else (bits + 7) // 8)
            rate = _extended(body[8:18])
        elif name == b"SSND":
            body = os.pread(fd, 4, offset + 8)
            if len(body) < 4 or frame_bytes <= 0 or rate <= 0 or size >= AIFF_UNKNOWN_SIZE:
                return None
            skip = struct.unpack(">I", body)[0]  # the SSND offset: bytes before the first frame
            present = os.fstat(fd).st_size - (offset + 16 + skip)
            return size - 8 - skip, present, round(rate * frame_bytes), frame_bytes
    return None


def au_sizes(fd: int) -> Sizes | None:
    """AU (Sun/NeXT, big- or little-endian): the header's data size against the bytes after its offset."""
    head = os.pread(fd, 24, 0)
    if len(head) < 24 or head[:4] not in (b".snd", b"dns."):
        return None
    order = ">" if head[:4] == b".snd" else "<"
    start, size, encoding, rate, channels = struct.unpack(order + "5I", head[4:24])
    per_sample = _AU_BYTES.get(encoding)
    if per_sample is None or size == 0 or size >= UNKNOWN_SIZE or channels == 0:
        return None
    frame_bytes = per_sample * channels
    return size, os.fstat(fd).st_size - start, rate * frame_bytes, frame_bytes


def w64_sizes(fd: int) -> Sizes | None:
    """Sony Wave64: the data chunk's size (64-bit, with its 24-byte header) against the bytes after it."""
    head = os.pread(fd, 40, 0)
    if len(head) < 40 or head[:4] != b"riff" or head[24:28] != b"wave":
        return None
    byte_rate, block_align = 0, 0
    chunks = _chunks(fd, 40, 24, lambda c: struct.unpack("<Q", c[16:24])[0], lambda n: max(24, n + (-n % 8)))
    for offset, name, size in chunks:
        if name == b"fmt ":
            body = os.pread(fd, 14, offset + 24)
            if len(body) == 14:
                byte_rate, block_align = struct.unpack("<IH", body[8:14])
        elif name == b"data":
            if size < 24 or size >= UNKNOWN_SIZE_64 or byte_rate <= 0:  # ffmpeg to a pipe: 2^63 - 1
                return None
            return size - 24, os.fstat(fd).st_size - offset - 24, byte_rate, block_align
    return None


READERS: dict[str, Callable[[int], Sizes | None]] = {"AIFF": aiff_sizes, "AU": au_sizes, "W64": w64_sizes}


def container_missing_seconds(fd: int, form: str) -> float:
    """Seconds of audio an AIFF, AU or W64 header (libsndfile's ``form``) declares beyond the file's end;
    0 for a whole file, another format, or a header that says no length."""
    reader = READERS.get(form)
    try:
        sizes = reader(fd) if reader is not None else None
    except OSError:
        return 0.0
    return shortfall_seconds(*sizes) if sizes is not None else 0.0
