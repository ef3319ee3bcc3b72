"""The supervisor (run on the daemon's main thread): the live watchdog and the periodic status.

Every ``tick``: a live source that reports a device error is reopened at once, then with a doubling wait
(``RETRY_FIRST_S``, capped at ``max(1 s, watchdog_s)``); one that delivers no samples for ``watchdog_s``
is reported "stalled" and reopened; either alarm clears when samples flow again. Each such alarm also
declares the source away (``Stream.away``): the stream's open events end at the end of the audio heard
(the feature stage marks where, the result stage ends them), without waiting for the source to come
back. A pipe input cannot be reopened, so its stall is only reported (``streamd.input_watch``): its
writer's pause loses no audio and stream time waits with it, so its events go on. Every
``status_interval_s`` each stream's status is published (overloaded when windows were dropped since the
last one; finished once its input ended and every result of it is out, while other streams go on — the
run's last status of each stream, counting every message before it, still comes at the end).
"""

from __future__ import annotations

import time

from streamd.engine import Engine
from streamd.input_watch import pipe_stall
from streamd.status import Status
from streamd.streams import Stream

RETRY_FIRST_S = 0.25  # first wait between reopen attempts of a failed device (then doubling)


class Supervisor:
    """Watches the sources and reports on every stream."""

    def __init__(
        self,
        streams: list[Stream],
        engine: Engine,
        status: Status,
        watchdog_s: float,
        status_interval_s: float,
    ) -> None:
        self.streams = streams
        self.engine = engine
        self.status = status
        self.watchdog_s = watchdog_s
        self.status_interval_s = status_interval_s
        self.next_status = 0.0

    def begin(self) -> None:
        """The sources have just started: the first status is due one interval from now."""
        now = time.monotonic()
        self.next_status = now + self.status_interval_s
        for stream in self.streams:
            stream.last_write = (0, now)

    def tick(self) -> None:
        now = time.monotonic()
        for stream in self.streams:
            if stream.source.live:
                self._watch(stream, now)
            elif stream.source.pipe and (note := pipe_stall(stream, now, self.watchdog_s)):
                self.status.publish(stream, "stalled", note)
        if now >= self.next_status:
            self._report()
            self.next_status = now + self.status_interval_s

    def complete(self, stream: Stream) -> bool:
        """True once ``stream`` ended, each window was classified and published, dropped or failed, and
        its open events were ended at the end of its audio (so "finished" is its last word)."""
        if not stream.finished:  # read first: every window of it was submitted before this was set
            return False
        classified, handled = self.engine.done_with(stream.index)  # then the engine's, then the results'
        through = handled == stream.submitted_windows and stream.published_windows == classified
        return through and not stream.audio_stops

    def _report(self) -> None:
        for stream in self.streams:
            dropped = self.engine.counters(stream.index)["dropped_windows"]
            state = stream.alarm or ("overloaded" if dropped > stream.dropped_seen else "running")
            if state in ("running", "overloaded") and stream.source.error:
                state = "device_error"  # the source has failed: never "running" with its error
            elif state == "running" and self.complete(stream):
                state = "finished"  # its input ended and its results are out; other streams go on
            stream.dropped_seen = dropped
            self.status.publish(stream, state, stream.source.error)

    def _watch(self, stream: Stream, now: float) -> None:
        source = stream.source
        written = source.delivered
        if written != stream.last_write[0]:
            stream.last_write = (written, now)
            stream.alarm = None
            stream.retry_delay_s = 0.0
            return
        if source.error:
            if stream.alarm == "device_error" and now < stream.retry_at:
                return
            first = stream.alarm != "device_error"
            stream.alarm = "device_error"
            stream.retry_delay_s = (
                RETRY_FIRST_S if first else min(2 * stream.retry_delay_s, max(1.0, self.watchdog_s))
            )
            stream.retry_at = now + stream.retry_delay_s
            self.status.publish(stream, "device_error", f"{source.error}; reopening the device")
        elif now - stream.last_write[1] >= self.watchdog_s:
            stream.alarm = "stalled"
            quiet = now - stream.last_write[1]
            self.status.publish(stream, "stalled", f"no audio for {quiet:.1f} s; reopening the device")
        else:
            return
        # the source is away: its open events end after the audio it delivered (held blocks included,
        # which the reopen writes to the ring)
        stream.away = (stream.away[0] + 1, source.delivered)
        source.restart()
        stream.last_write = (written, now)  # give the reopened device a full watchdog period
