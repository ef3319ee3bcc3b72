"""Stream time against the wall clock, for a live network source (``streamd.network_source``).

Stream time 0 is the connection made before the model loads: what a live server sent meanwhile is audio
to read at once, not a delay to keep for the whole run; ``start`` caps that catch-up at
``START_BACKLOG_S`` (a file served faster than real time would otherwise arrive as one burst of the
whole start-up). Writing waits only while the stream runs more than ``AHEAD_S`` ahead of the wall clock
(a file over HTTP, or a server's burst on connecting). Once a frame has to be waited for, the stream is at
its live edge: the clock is re-anchored there if the stream is ahead (a sender's fast clock, a burst read
ahead), and once, on the first connection, if it is behind (a server that sends only the present skipped
what it sent while the model loaded). A reconnect's outage is the wall time since the anchor that the
stream's samples do not cover (``missing``).
"""

from __future__ import annotations

import time

AHEAD_S = 3.0  # how far a stream may run ahead of the wall clock before writing waits
START_BACKLOG_S = 5.0  # at most this much of what came before the reader started is read at once


class StreamClock:
    """The wall-clock anchor of one stream's sample positions (at ``rate``)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.t0 = time.monotonic()  # wall time of stream position 0
        self.anchored = False  # re-anchored at the live edge once

    def start(self) -> None:
        """The reader starts: at most ``START_BACKLOG_S`` of catching up."""
        self.t0 = max(self.t0, time.monotonic() - START_BACKLOG_S)

    def wait_s(self, position: int) -> float:
        """How long writing at ``position`` must wait (0 unless more than ``AHEAD_S`` ahead)."""
        return max(0.0, position / self.rate - (time.monotonic() - self.t0) - AHEAD_S)

    def at_live_edge(self, position: int, duration_s: float) -> None:
        """A frame of ``duration_s`` starting at ``position`` had to be waited for: it was made just now."""
        lead = position / self.rate + duration_s - (time.monotonic() - self.t0)
        if lead > 0 or not self.anchored:
            self.t0 -= lead
        self.anchored = True

    def missing(self, position: int) -> int:
        """Samples of wall time since the anchor that ``position`` does not cover (an outage's length)."""
        return round((time.monotonic() - self.t0) * self.rate) - position
