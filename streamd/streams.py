"""One audio stream through the daemon: its source and the state each stage keeps for it.

Each field is written by one stage only (named in the comments); the status module reads them all.
``audio_stops`` is the one hand-over between two stages: the feature stage appends, the result stage
takes (a deque: both ends are thread-safe) once it has ended the events there; the supervisor only looks
whether any is left (a stream is not finished before its last one is taken).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from audio_core.resample import StreamingResampler
from streamd import messages
from streamd.events import EventDetector
from streamd.gaps import SegmentedFrontEnd, SourceTimeline
from streamd.sources import Source

LATENCY_HISTORY = 4096


@dataclass(frozen=True)
class AudioStop:
    """Where a stream's audio stopped (its source declared away, or its input ended): stream time
    ``t_end``, after the window ``last_index`` (-1: none). Its open events end there, once the windows up
    to it are through."""

    t_end: float
    last_index: int


@dataclass
class Stream:
    """Per-stream state, grouped by the stage that owns it."""

    index: int
    name: str
    source: Source
    # feature stage
    resampler: StreamingResampler
    front: SegmentedFrontEnd  # one front end per stretch of audio between device outages
    events: EventDetector  # result stage
    finished: bool = False
    timeline: SourceTimeline = field(default_factory=SourceTimeline)  # ring index -> stream-time index
    submitted_windows: int = 0  # windows handed to the engine
    nonfinite_samples: int = 0  # NaN / inf samples from the source, replaced by silence
    away_seen: int = 0  # the supervisor's ``away`` last turned into an ``AudioStop``
    audio_stops: deque[AudioStop] = field(default_factory=deque)  # for the result stage to end events at
    # result stage
    published_windows: int = 0  # windows whose prediction is out
    stretch: int = 0  # outages before the last window published: a new one ends the open events
    through_index: int = -1  # every window up to this index is published, dropped or failed
    events_from: float = 0.0  # windows starting earlier feed no event (their audio's events have ended)
    late_results: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_HISTORY))
    # supervisor
    last_write: tuple[int, float] = (0, 0.0)  # (ring write index, monotonic time) for the watchdog
    alarm: str | None = None  # "stalled" / "device_error" while the watchdog is handling it
    retry_at: float = 0.0  # monotonic time of the next reopen attempt
    retry_delay_s: float = 0.0  # wait before the attempt after that (doubles, capped)
    # times the watchdog declared the source away (each ends the open events), and the audio delivered
    # by then (a ring index)
    away: tuple[int, int] = (0, 0)
    # status
    status_t: float = 0.0  # stream time of the last status message
    dropped_seen: int = 0  # dropped windows at the last status message


def unique_stream_names(names: Sequence[str]) -> list[str]:
    """Valid, distinct stream names (``a``, ``a-2``, ...)."""
    out: list[str] = []
    for raw in names:
        base = messages.stream_name(raw)
        name, n = base, 2
        while name in out:
            name = f"{base[: messages.MAX_STREAM_CHARS - 4]}-{n}"
            n += 1
        out.append(name)
    return out
