"""Status messages and the counters they carry (``streamd.messages.STATUS_COUNTERS``).

Any stage may publish a status (the feature stage for a padded short stream, the supervisor for the
watchdog and the periodic report, the daemon at start and end); the counters are read from the stages'
own tallies (engine, ring, source, stream, publisher) at that moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from streamd import messages
from streamd.engine import Engine
from streamd.gaps import LostInterval, gap_status
from streamd.streams import Stream

CounterHook = Callable[[int], dict[str, int | float]]  # stream index -> extra status counters


class PublisherLike(Protocol):
    """What the daemon needs from ``streamd.publisher.Publisher``."""

    def start(self) -> None: ...
    def publish(self, msg: dict[str, Any]) -> None: ...
    def stop(self, timeout: float = 1.0) -> None: ...
    def flush(self, timeout: float) -> bool: ...
    @property
    def counters(self) -> dict[str, int]: ...


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile with linear interpolation (numpy's default), 0.0 for no values. Plain
    Python, as fast as numpy's for the 4096 latencies kept, without its first-use import of ``numpy.ma``
    and without letting go of the GIL midway (with many streams each re-take waited behind the others)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (pos - low))


class Status:
    """Builds and publishes the status messages of every stream."""

    def __init__(
        self, publisher: PublisherLike, engine: Engine, sample_rate: int, counter_hooks: list[CounterHook]
    ) -> None:
        self.publisher = publisher
        self.counter_hooks = counter_hooks  # shared with the daemon: integrations append to it
        self.engine = engine
        self.sample_rate = sample_rate
        self.started = 0.0  # monotonic time the pipeline started (0: not yet)

    def counters(self, stream: Stream) -> dict[str, int | float]:
        """Every status counter of ``stream``."""
        ring = stream.source.ring
        wall = max(time.monotonic() - self.started, 1e-9) if self.started else 0.0
        audio_s = stream.front.samples / self.sample_rate
        latencies = list(stream.latencies_ms)
        pub = self.publisher.counters
        extra: dict[str, int | float] = {}
        for hook in self.counter_hooks:
            extra.update(hook(stream.index))
        return {
            **extra,
            **self.engine.counters(stream.index),
            "samples": stream.front.samples,
            "overruns": ring.overruns + stream.source.device_overflows,
            "rtf": audio_s / wall if wall else 0.0,
            "late_results": stream.late_results,
            "published": pub.get("published", 0),
            "publish_dropped": pub.get("publish_dropped", 0),
            "restarts": stream.source.restarts,
            "decode_errors": stream.source.decode_errors,
            "filled_samples": stream.source.filled_samples,
            "lost_samples": ring.lost_samples,
            "nonfinite_samples": stream.nonfinite_samples,
            "batches": self.engine.batches,
            "latency_p50_ms": percentile(latencies, 50),
            "latency_p99_ms": percentile(latencies, 99),
            **stream.front.counters(),  # real samples, and the stream time lost to device outages
        }

    def publish(self, stream: Stream, state: str, message: str | None = None) -> None:
        """Publish a status of ``stream`` covering the stream time since its last one."""
        t_end = stream.front.samples / self.sample_rate
        t_start = min(stream.status_t, t_end)
        stream.status_t = t_end
        text = None if message is None else message[: messages.MAX_STATUS_MESSAGE_CHARS]
        self.publisher.publish(
            messages.status(stream.name, t_start, t_end, self.counters(stream), state, message=text)
        )

    def publish_gap(self, stream: Stream, interval: LostInterval) -> None:
        """Announce a device outage of ``stream`` (the status spans the lost interval itself)."""
        self.publisher.publish(gap_status(stream.name, interval, self.counters(stream)))
