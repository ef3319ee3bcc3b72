"""Chained Ogg files: logical streams one after another in one file (Ogg files joined with ``cat``, a radio
stream's dump). libsndfile decodes the first stream and stops there without a word; this walks the page
headers of an open file (its position is not moved) to find where that first stream ends and whether
another begins after it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

PAGE_HEADER = 27  # bytes before a page's segment table
_BOS, _EOS = 0x02, 0x04  # header-type flags: the first / last page of a logical stream
MIN_UNREAD_BYTES = 4096  # less after the first stream's end is padding or a tag, not another recording


def _pages(fd: int, size: int) -> Iterator[tuple[int, int, int, int]]:
    """(offset, header type, serial number, page length) of each whole page, from the start."""
    offset = 0
    while offset + PAGE_HEADER <= size:
        head = os.pread(fd, PAGE_HEADER, offset)
        if head[:4] != b"OggS":
            return
        flags, serial, segments = head[5], struct.unpack("<I", head[14:18])[0], head[26]
        table = os.pread(fd, segments, offset + PAGE_HEADER)
        if len(table) < segments:
            return
        length = PAGE_HEADER + segments + sum(table)
        if offset + length > size:
            return
        yield offset, flags, serial, length
        offset += length


def unread_share(fd: int) -> tuple[int, float] | None:
    """(how many logical streams follow the first, the share of the file's bytes they hold) for a chained
    Ogg file open as ``fd``, else None (one stream, multiplexed streams that start together, no Ogg)."""
    try:
        size = os.fstat(fd).st_size
        first_serials: set[int] = set()
        ended: set[int] = set()
        for offset, flags, serial, _ in _pages(fd, size):
            if flags & _BOS and ended and ended >= first_serials:  # a new stream after the first ended
                chained = sum(1 for _, f, _, _ in _pages(fd, size) if f & _BOS) - len(first_serials)
                rest = size - offset
                return (chained, rest / size) if rest >= MIN_UNREAD_BYTES else None
            if flags & _BOS and not ended:
                first_serials.add(serial)
            if flags & _EOS and serial in first_serials:
                ended.add(serial)
    except OSError:
        return None
    return None
