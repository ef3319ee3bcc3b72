"""Downmixing and streaming sample-rate conversion to the model rate (soxr).

``StreamingResampler`` turns chunks at the capture rate into chunks at the model rate; the concatenated
output equals ``soxr.resample`` of the whole signal (``resample_offline``, the plain reference). At equal
rates it passes samples through untouched.
"""

from __future__ import annotations

import math

import numpy as np
import soxr

QUALITY = "HQ"


def downmix(block: np.ndarray) -> np.ndarray:
    """Average the channels of ``(n, channels)`` float32 samples into ``(n,)``; mono passes through."""
    if block.ndim == 1:
        return block
    if block.shape[1] == 1:
        return block[:, 0]
    return block.mean(axis=1, dtype=np.float32)


def resample_offline(wave: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Whole-signal reference of what ``StreamingResampler`` produces chunk by chunk."""
    if in_rate == out_rate:
        return np.asarray(wave, dtype=np.float32)
    return soxr.resample(np.asarray(wave, dtype=np.float32), in_rate, out_rate, quality=QUALITY)


class StreamingResampler:
    """Mono float32 chunks at ``in_rate`` -> chunks at ``out_rate``; end with ``process(..., last=True)``."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError("sample rates must be positive")
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self._stream = (
            None
            if self.in_rate == self.out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, "float32", QUALITY)
        )
        self.samples_in = 0
        self.samples_out = 0

    def process(self, mono: np.ndarray, last: bool = False) -> np.ndarray:
        """Resample the next chunk; with ``last`` also flush what the filter still holds (the end of a
        stream, or of a stretch before a gap): a chunk after that starts afresh, with no history."""
        data = np.ascontiguousarray(mono, dtype=np.float32)
        self.samples_in += data.size
        out = data if self._stream is None else self._stream.resample_chunk(data, last=last)
        if last and self._stream is not None:
            self._stream.clear()
        self.samples_out += out.size
        return out

    def input_index(self, out_index: int) -> int:
        """Index of the input sample at the same instant as output sample ``out_index`` (rounded up)."""
        return math.ceil(out_index * self.in_rate / self.out_rate)
