"""MPEG audio files (MP3, MP2): the samples their frames hold, counted by walking the frame headers, against
the length the decoder will deliver.

libsndfile's MPEG decoder stops at the length it takes on opening: a Xing/Info/VBRI header's frame count,
or, with none, an estimate from the file's size and its first frame. So two MP3s joined end to end (the
first one's header counts only its own frames), or a VBR file with no length header, are read short
without a word; and a file cut short still claims its header's length. ``mpeg_shortfall`` tells both
apart from a whole file, to within ``TOLERANCE_FRAMES`` frames (an encoder's delay and padding) and
``TOLERANCE_SHARE`` of the length.
"""

from __future__ import annotations

import mmap
import os

TOLERANCE_FRAMES = 3
TOLERANCE_SHARE = 0.01
_SEARCH_BYTES = 65536  # where the first frame may start after an ID3v2 tag (junk before it)
# kbit/s by bitrate index 1..14: MPEG-1 layers I, II, III; MPEG-2/2.5 layer I; MPEG-2/2.5 layers II and III
_BITRATES = {
    (1, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (1, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (1, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (2, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (2, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # by version bits
_LENGTH_TAGS = (b"Xing", b"Info", b"VBRI")


def _frame(data: bytes | mmap.mmap, pos: int) -> tuple[int, int, int] | None:
    """(frame bytes, samples, sample rate) of a valid frame header at ``pos``, else None (free format
    included: its frames cannot be walked)."""
    if pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return None
    b1, b2 = data[pos + 1], data[pos + 2]
    version, layer_bits = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate_index, rate_index, padding = b2 >> 4, (b2 >> 2) & 3, (b2 >> 1) & 1
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    layer = 4 - layer_bits  # 1, 2 or 3
    mpeg1 = version == 3
    table = _BITRATES[(1, layer)] if mpeg1 else _BITRATES[(2, 1 if layer == 1 else 2)]
    bitrate, rate = table[bitrate_index - 1] * 1000, _RATES[version][rate_index]
    if layer == 1:
        return (12 * bitrate // rate + padding) * 4, 384, rate
    per_byte = 144 if (layer == 2 or mpeg1) else 72
    return per_byte * bitrate // rate + padding, 1152 if (layer == 2 or mpeg1) else 576, rate


def _after_id3(data: bytes | mmap.mmap, pos: int) -> int:
    """``pos``, or past the ID3v2 tag that starts there (one starts each of MP3s joined end to end)."""
    if data[pos : pos + 3] != b"ID3" or pos + 10 > len(data):
        return pos
    size = (data[pos + 6] << 21) | (data[pos + 7] << 14) | (data[pos + 8] << 7) | data[pos + 9]
    return pos + 10 + size + (10 if data[pos + 5] & 0x10 else 0)


def _first_frame(data: bytes | mmap.mmap) -> int | None:
    """Where the audio frames start: after an ID3v2 tag, at the first header followed by another."""
    start = _after_id3(data, 0)
    for pos in range(start, min(len(data), start + _SEARCH_BYTES)):
        found = _frame(data, pos)
        if found is not None and _frame(data, pos + found[0]) is not None:
            return pos
    return None


def held_samples(data: bytes | mmap.mmap) -> tuple[int, int, bool] | None:
    """(samples the whole frames hold, sample rate, whether the first frame is a length header), or None
    where no run of frames is found. A length header's own frame holds no audio and is not counted; the
    walk passes ID3v2 tags, resyncs after damage as the decoder does (at the next header that chains to
    another), and ends at the file's end or a frame cut short."""
    pos = _first_frame(data)
    if pos is None:
        return None
    first = _frame(data, pos)
    assert first is not None
    head = bytes(data[pos : pos + min(first[0], 64)])
    tagged = any(tag in head for tag in _LENGTH_TAGS)
    samples, rate = 0, first[2]
    if tagged:
        pos += first[0]
    while (pos := _next_frame(data, _after_id3(data, pos))) is not None:
        found = _frame(data, pos)
        assert found is not None
        if pos + found[0] > len(data):  # cut short: the decoder drops it too
            break
        samples += found[1]
        pos += found[0]
    return samples, rate, tagged


def _chained(data: bytes | mmap.mmap, pos: int) -> bool:
    """A valid header at ``pos`` whose frame ends at the file's end or at another valid header."""
    found = _frame(data, pos)
    if found is None:
        return False
    end = pos + found[0]
    return end >= len(data) or _frame(data, end) is not None


def _next_frame(data: bytes | mmap.mmap, pos: int) -> int | None:
    """``pos`` if a frame starts there, else where the decoder would resync after damage: the next
    header that chains to another (or to the end); None at the end, or with only a tag left."""
    if _frame(data, pos) is not None:
        return pos
    while (pos := data.find(b"\xff", pos + 1)) != -1:
        if _chained(data, pos):
            return pos
    return None


def mpeg_shortfall(fd: int, declared_frames: int, sample_rate: int) -> tuple[float, float]:
    """(seconds the file's length header declares beyond the frames it holds: cut short, seconds its frames
    hold beyond the ``declared_frames`` the decoder stops at): 0.0 each within the tolerance, or where the
    frames cannot be walked."""
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return 0.0, 0.0
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as data:
            held = held_samples(data)
    except (OSError, ValueError):
        return 0.0, 0.0
    if held is None or held[1] != sample_rate:
        return 0.0, 0.0
    samples, _, tagged = held
    spare = TOLERANCE_FRAMES * 1152 + TOLERANCE_SHARE * max(samples, declared_frames)
    missing = declared_frames - samples if tagged else 0  # no header: the decoder's own guess, no claim
    beyond = samples - declared_frames
    return (
        missing / sample_rate if missing > spare else 0.0,
        beyond / sample_rate if beyond > spare else 0.0,
    )
