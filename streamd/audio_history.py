"""The recent source audio of one stream, addressed by stream-time sample index (``streamd.clips``).

Only real samples are stored: the newest ``capacity`` of them in a ring. A device outage (a write that
starts after the last one ended) is remembered as a jump, not written as silence, so that a long outage
costs no memory and never pushes the audio before it out of the ring; ``read`` gives silence for the
lost time. Stream indices are the source's samples plus the lost ones (``streamd.gaps.SourceTimeline``).
"""

from __future__ import annotations

from collections import deque

import numpy as np


class AudioHistory:
    """The newest ``capacity`` real frames of one stream and the outages between them."""

    def __init__(self, capacity: int, channels: int) -> None:
        self.capacity = max(1, capacity)
        self._buf = np.zeros((self.capacity, channels), dtype=np.float32)
        self.end = 0  # stream index after the newest sample
        self._stored = 0  # real samples ever stored (the ring's own index)
        self._stretches: deque[tuple[int, int]] = deque([(0, 0)])  # (stream index, ring index) of each start

    def write(self, start: int, data: np.ndarray) -> None:
        """Append ``data`` whose first sample has stream index ``start``: later than the end is an outage,
        earlier overlaps what is held (that part is skipped)."""
        if start > self.end:
            self._stretches.append((start, self._stored))
            self.end = start
        data = data[self.end - start :]
        n = data.shape[0]
        if n == 0:
            return
        kept = data[-self.capacity :]
        base = self._stored + n - kept.shape[0]
        self._buf[np.arange(base, base + kept.shape[0]) % self.capacity] = kept
        self._stored += n
        self.end += n
        oldest = self._stored - self.capacity
        while len(self._stretches) > 1 and self._stretches[1][1] <= oldest:  # wholly overwritten
            self._stretches.popleft()

    def read(self, start: int, end: int) -> tuple[int, np.ndarray]:
        """Stream samples ``[first, min(end, newest))`` with ``first`` >= ``start`` the earliest still known
        (held audio, or the silence of an outage after it), and ``first``."""
        oldest = max(0, self._stored - self.capacity)
        pieces: list[np.ndarray] = []
        first: int | None = None
        stretches = list(self._stretches)
        for i, (s0, r0) in enumerate(stretches):
            r1 = stretches[i + 1][1] if i + 1 < len(stretches) else self._stored
            audio_end = s0 + r1 - r0
            lost_end = stretches[i + 1][0] if i + 1 < len(stretches) else audio_end
            lo, hi = max(start, s0), min(end, audio_end)  # this stretch's audio asked for
            if lo < hi:
                held = max(lo, s0 + max(0, oldest - r0))
                if held > lo:  # its start is no longer held: nothing before can join on
                    pieces, first = [], None
                if held < hi:
                    first = held if first is None else first
                    pieces.append(self._buf[np.arange(r0 + held - s0, r0 + hi - s0) % self.capacity])
            lo, hi = max(start, audio_end), min(end, lost_end)  # the outage after it: silence
            if lo < hi:
                first = lo if first is None else first
                pieces.append(np.zeros((hi - lo, self._buf.shape[1]), np.float32))
        if first is None:
            return max(start, min(end, self.end)), np.zeros((0, self._buf.shape[1]), np.float32)
        return first, np.concatenate(pieces)
