"""How much audio a WAV file's header promises beyond the file's end (a truncated recording).

libsndfile reads a truncated WAV up to its last whole frame without a word, so a file cut short (a
recorder that died, a copy that stopped) would be classified as if it were whole. This reads the RIFF
(or RF64 / RIFX) chunk headers of an open file, without moving its position: the ``data`` chunk's
declared size against the bytes that follow it. Sizes that writers use when they do not know the length
(0, and from ``UNKNOWN_SIZE`` up, as written to a pipe) promise nothing.
"""

from __future__ import annotations

import os
import struct

UNKNOWN_SIZE = 0x7FFF0000  # streamed WAVs say 0xFFFFFFFF (or about 2^31): length unknown, not a promise
UNKNOWN_SIZE_64 = 1 << 62  # the same in RF64's 64-bit size
MIN_MISSING_S = 0.01  # less is a writer's rounding (a few bytes off, a partial frame), not a cut recording
MIN_MISSING_BYTES = 64  # nor is a shortfall within one block of a compressed format or a header's size
MAX_CHUNKS = 64  # chunks read before ``data`` (a header that never reaches it is left to libsndfile)


def _data_chunk(fd: int) -> tuple[int, int, int, int] | None:
    """``(data offset, declared data bytes, bytes per second, block align)`` of a RIFF/RIFX/RF64 WAVE
    file, or None."""
    head = os.pread(fd, 12, 0)
    if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX", b"RF64"):
        return None
    order = ">" if head[:4] == b"RIFX" else "<"
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
            return (offset + 8, size, byte_rate, block_align) if size < UNKNOWN_SIZE_64 else None
        offset += 8 + size + (size & 1)
    return None


def missing_seconds(fd: int) -> float:
    """Seconds of audio the header of the WAV open as ``fd`` declares beyond the file's end; 0 when the
    file is whole (to ``MIN_MISSING_S`` and a block or ``MIN_MISSING_BYTES``), is no WAV, or does not say
    its length."""
    try:
        found = _data_chunk(fd)
        if found is None:
            return 0.0
        start, declared, byte_rate, block_align = found
        present = os.fstat(fd).st_size - start
    except OSError:
        return 0.0
    short = declared - present
    if declared == 0 or byte_rate <= 0 or short <= max(block_align, MIN_MISSING_BYTES):
        return 0.0
    missing = short / byte_rate
    return missing if missing >= MIN_MISSING_S else 0.0
