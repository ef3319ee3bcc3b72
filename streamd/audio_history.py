"""The recent source audio of one stream, addressed by stream-time sample index (``streamd.clips``).

Only real samples are stored, as the blocks that arrived: at most ``capacity`` of them (the oldest go
first), and none before what the owner says it no longer needs (``forget_before``). A device outage (a
write that starts after the last one ended) is remembered as a jump, not written as silence, so that a
long outage costs no memory and never pushes the audio before it out; ``read`` gives silence for the
lost time. Stream indices are the source's samples plus the lost ones (``streamd.gaps.SourceTimeline``).
"""

from __future__ import annotations

from collections import deque

import numpy as np


class AudioHistory:
    """The newest real frames of one stream (at most ``capacity``) and the outages between them."""

    def __init__(self, capacity: int, channels: int) -> None:
        self.capacity = max(1, capacity)
        self.channels = channels
        self.end = 0  # stream index after the newest sample
        self._blocks: deque[tuple[int, np.ndarray]] = deque()  # (stream index of its first sample, audio)
        self._held = 0  # real samples held
        self._known = 0  # stream index from which the timeline is known (held audio or outages after it)

    @property
    def oldest(self) -> int:
        """Stream index of the oldest sample still known (audio held, or an outage after it)."""
        return self._known

    def write(self, start: int, data: np.ndarray) -> None:
        """Append ``data`` whose first sample has stream index ``start``: later than the end is an outage,
        earlier overlaps what is held (that part is skipped)."""
        start = max(start, 0)
        if start < self.end:
            data = data[self.end - start :]
            start = self.end
        n = data.shape[0]
        if n == 0:
            return
        block = np.array(data[-self.capacity :], dtype=np.float32, copy=True)  # the caller's buffer is reused
        first = start + n - block.shape[0]
        if not self._blocks:
            self._known = max(self._known, first)
        self._blocks.append((first, block))
        self._held += block.shape[0]
        self.end = start + n
        self._forget(self._held - self.capacity)

    def forget_before(self, index: int) -> None:
        """Drop what lies before stream index ``index`` (the owner will never read it)."""
        drop = 0
        for first, block in self._blocks:
            if first >= index:
                break
            drop += min(block.shape[0], index - first)
        known = self._known
        self._forget(drop)
        # from ``index`` on the timeline stays known, an outage there included (a pre-roll reaching into it)
        self._known = max(known, min(index, self.end))

    def _forget(self, samples: int) -> None:
        """Drop the ``samples`` oldest real samples held."""
        while samples > 0 and self._blocks:
            first, block = self._blocks[0]
            if block.shape[0] <= samples:
                self._blocks.popleft()
                samples -= block.shape[0]
                self._held -= block.shape[0]
                self._known = self._blocks[0][0] if self._blocks else self.end
                continue
            self._blocks[0] = (first + samples, block[samples:].copy())  # no view keeps the whole block
            self._held -= samples
            self._known = first + samples
            samples = 0

    def read(self, start: int, end: int) -> tuple[int, np.ndarray]:
        """Stream samples ``[first, min(end, newest))`` with ``first`` >= ``start`` the earliest still known
        (held audio, or the silence of an outage after it), and ``first``."""
        first = min(max(start, self._known), max(start, self.end))
        stop = min(end, self.end)
        if stop <= first:
            return first, np.zeros((0, self.channels), np.float32)
        out = np.zeros((stop - first, self.channels), np.float32)  # silence where nothing was written
        for at, block in self._blocks:
            lo, hi = max(first, at), min(stop, at + block.shape[0])
            if lo < hi:
                out[lo - first : hi - first] = block[lo - at : hi - at]
        return first, out
