"""What a WAV file's header promises about its length: audio beyond the file's end (a truncated
recording), or no length at all (a pipe writer's).

libsndfile reads a truncated WAV up to its last whole frame without a word, so a file cut short (a
recorder that died, a copy that stopped) would be classified as if it were whole. This reads the RIFF
(or RF64 / RIFX) chunk headers of an open file, without moving its position: the ``data`` chunk's
declared size against the bytes that follow it. From a pipe the bytes cannot be counted in advance: the
frames its header declares (libsndfile's count) are weighed against the frames read
(``stream_missing_seconds``).
Sizes that writers use when they do not know the length (0, and from ``UNKNOWN_SIZE`` up, as written to a
pipe) promise nothing; a file whose RIFF and data sizes both say nothing holds audio to its end
(``unsized_patch``: libsndfile would read none of it).
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

UNKNOWN_SIZE = 0x7FFF0000  # streamed WAVs say 0xFFFFFFFF (or about 2^31): length unknown, not a promise
UNKNOWN_SIZE_64 = 1 << 62  # the same in RF64's 64-bit size
MIN_MISSING_S = 0.01  # less is a writer's rounding (a few bytes off, a partial frame), not a cut recording
MIN_MISSING_BYTES = 64  # nor is a shortfall within one block of a compressed format or a header's size
MAX_CHUNKS = 64  # chunks read before ``data`` (a header that never reaches it is left to libsndfile)
WAV_FORMATS = ("WAV", "WAVEX")  # libsndfile's names of RIFF WAVE files (RF64 is refused from a pipe)
# bytes of one sample of the encodings whose size in bytes follows from their frames (from a pipe)
SAMPLE_BYTES = {
    "PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4,
    "FLOAT": 4, "DOUBLE": 8, "ULAW": 1, "ALAW": 1,
}  # fmt: skip


class DataChunk(NamedTuple):
    """A WAVE file's ``data`` chunk as its header declares it."""

    start: int  # offset of its first byte of audio
    declared: int  # bytes of audio the header declares
    byte_rate: int
    block_align: int
    riff_size: int  # the size the RIFF (RIFX, RF64) chunk declares
    form: bytes  # b"RIFF", b"RIFX" or b"RF64"


def _data_chunk(fd: int) -> DataChunk | None:
    """The ``data`` chunk of a RIFF/RIFX/RF64 WAVE file open as ``fd``, or None (no WAVE, no length)."""
    head = os.pread(fd, 12, 0)
    if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX", b"RF64"):
        return None
    order = ">" if head[:4] == b"RIFX" else "<"
    riff_size = struct.unpack(order + "I", head[4:8])[0]
    offset, byte_rate, block_align, ds64_size = 12, 0, 0, None
    for _ in range(MAX_CHUNKS):
        chunk = os.pread(fd, 8, offset)
        if len(chunk) < 8:
            return None
        name, size = chunk[:4], struct.unpack(order + "I", chunk[4:])[0]
        if name == b"ds64":  # RF64: the real data size is 64-bit, here
            body = os.pread(fd, 16, offset + 8)
            ds64_size = struct.unpack("<Q", body[8:16])[0] if len(body) == 16 else None
        elif name == b"fmt ":
            body = os.pread(fd, 14, offset + 8)
            if len(body) == 14:
                byte_rate, block_align = struct.unpack(order + "IH", body[8:14])
        elif name == b"data":
            if size == 0xFFFFFFFF and ds64_size is not None:
                size = ds64_size
            elif size >= UNKNOWN_SIZE:
                return None
            found = DataChunk(offset + 8, size, byte_rate, block_align, riff_size, head[:4])
            return found if size < UNKNOWN_SIZE_64 else None
        offset += 8 + size + (size & 1)
    return None


def shortfall_seconds(declared: int, present: int, byte_rate: int, block_align: int) -> float:
    """Seconds of ``declared`` bytes of audio beyond the ``present`` ones: the one rule of files and pipes
    (0 for no promise, or a shortfall within a block, ``MIN_MISSING_BYTES`` or ``MIN_MISSING_S``)."""
    short = declared - present
    if declared == 0 or byte_rate <= 0 or short <= max(block_align, MIN_MISSING_BYTES):
        return 0.0
    missing = short / byte_rate
    return missing if missing >= MIN_MISSING_S else 0.0


def missing_seconds(fd: int) -> float:
    """Seconds of audio the header of the WAV open as ``fd`` declares beyond the file's end; 0 when the
    file is whole (to ``MIN_MISSING_S`` and a block or ``MIN_MISSING_BYTES``), is no WAV, or does not say
    its length."""
    try:
        found = _data_chunk(fd)
        if found is None:
            return 0.0
        present = os.fstat(fd).st_size - found.start
    except OSError:
        return 0.0
    return shortfall_seconds(found.declared, present, found.byte_rate, found.block_align)


def stream_missing_seconds(
    form: str, subtype: str, channels: int, rate: int, declared_frames: int, read_frames: int
) -> float:
    """Seconds of audio a WAV read from a pipe (libsndfile's ``form`` and ``subtype``) declared beyond the
    ``read_frames`` it delivered: its header's ``declared_frames`` (libsndfile's count) are bytes that the
    rule of files weighs; 0 for a pipe writer's unknown length, and for a compressed encoding (whose bytes
    do not follow from its frames) or another container (from a pipe, libsndfile counts an AIFF's frames
    from a length it assumes, not from the header)."""
    width = SAMPLE_BYTES.get(subtype)
    if form not in WAV_FORMATS or width is None:
        return 0.0
    frame = width * channels
    declared = declared_frames * frame
    if declared >= UNKNOWN_SIZE:  # a pipe writer's 0xFFFFFFFF: unknown
        return 0.0
    return shortfall_seconds(declared, read_frames * frame, rate * frame, frame)


def unsized_patch(fd: int) -> dict[int, bytes] | None:
    """For a RIFF/RIFX WAVE file whose RIFF and data sizes both say nothing (both 0, or the RIFF's a pipe
    writer's unknown) with audio after its header: the header bytes (offset -> bytes) that state the
    length the file has; None for any other file (an empty WAV, RIFF 36, with bytes after it stays empty)."""
    try:
        found = _data_chunk(fd)
        size = os.fstat(fd).st_size
    except OSError:
        return None
    if found is None or found.form == b"RF64" or found.declared != 0:
        return None
    riff_unsized = found.riff_size == 0 or found.riff_size >= UNKNOWN_SIZE  # an empty WAV's says 36
    present = size - found.start
    present -= present % max(found.block_align, 1)
    if not riff_unsized or present <= 0 or present >= UNKNOWN_SIZE:
        return None
    order = ">" if found.form == b"RIFX" else "<"
    return {4: struct.pack(order + "I", size - 8), found.start - 4: struct.pack(order + "I", present)}
