"""Stream time against the wall clock, for a live network source (``streamd.network_source``).

Stream time 0 is the connection made before the model loads: what a live server sent meanwhile is audio
to read at once (the source's ring holds at least ``BACKLOG_RING_S``), not a delay to keep for the whole
run. Writing waits only while the stream runs more than ``AHEAD_S`` ahead of the wall clock (a file over
HTTP, or a server's burst on connecting). The stream is at its live edge when ``LIVE_EDGE_FRAMES``
frames in a row had to be waited for (each at least half its length and ``MIN_WAIT_S``) with no pacing
wait in between (a paced reader is never at the live edge, whatever a busy interpreter makes a read
take): there the clock is re-anchored if the stream is ahead (a server's burst, a sender's fast clock),
and, before any reconnect, if it is behind (a server that sends only the present skipped what it sent
while the model loaded). A reconnect's outage is the wall time since the anchor that the stream's
samples do not cover (``missing``).
"""

from __future__ import annotations

import time

AHEAD_S = 3.0  # how far a stream may run ahead of the wall clock before writing waits
BACKLOG_RING_S = 60.0  # the ring of a network source: a start-up's backlog fits in it
LIVE_EDGE_FRAMES = 3
MIN_WAIT_S = 0.02


class StreamClock:
    """The wall-clock anchor of one stream's sample positions (at ``rate``)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.t0 = time.monotonic()  # wall time of stream position 0
        self.anchored = False  # re-anchored at a live edge, or reconnected: behind is no longer followed
        self._waited_in_a_row = 0
        self._paced = False  # writing waited since the last frame that had to be waited for

    def wait_s(self, position: int) -> float:
        """How long writing at ``position`` must wait (0 unless more than ``AHEAD_S`` ahead)."""
        wait = max(0.0, position / self.rate - (time.monotonic() - self.t0) - AHEAD_S)
        if wait > 0:
            self._paced = True
            self._waited_in_a_row = 0
        return wait

    def frame(self, position: int, duration_s: float, waited_s: float) -> None:
        """A frame of ``duration_s`` starting at ``position`` arrived after ``waited_s`` of waiting for it."""
        if waited_s < max(0.5 * duration_s, MIN_WAIT_S):
            self._waited_in_a_row = 0
            return
        if self._paced:  # the first wait after pacing: the reader was ahead, not at the live edge
            self._paced = False
            self._waited_in_a_row = 0
            return
        self._waited_in_a_row += 1
        if self._waited_in_a_row < LIVE_EDGE_FRAMES:
            return
        lead = position / self.rate + duration_s - (time.monotonic() - self.t0)  # made just now
        if lead > 0 or not self.anchored:
            self.t0 -= lead
        self.anchored = True

    def missing(self, position: int) -> int:
        """Samples of wall time since the anchor that ``position`` does not cover (an outage's length)."""
        self.anchored = True  # a reconnect: from now on only a lead is followed
        return round((time.monotonic() - self.t0) * self.rate) - position
