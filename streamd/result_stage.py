"""The result stage (its own thread): the engine's scores -> top-k, messages, events, latency -> publisher.

The engine hands each scored batch to ``submit`` (on the engine thread), which only queues it; this
stage's thread takes the batches in order and, per window, publishes the prediction (top-k labels, level,
latency from the moment the window's last sample reached the ring), counts late results (older than the
time between two results) and runs the stream's event detector; every event passes through the event
hooks (integrations, e.g. clips add their file) before it is published. Where a source was declared
away (``Stream.audio_stops``), the open events end at the end of the audio heard, in order: right after
the last window submitted before it (or, were that dropped or failed, as soon as the engine has handled
it, ``done_with``); windows starting before that point (a stretch's tail window classified once the
source is back) then feed no event, so nothing ends twice or opens again. A stream whose input ended
has such a stop at its end (its events end with its audio while other streams go on, before its
"finished"). ``close`` (also what ``stop`` does) ends the stage once everything queued before it is
published, then flushes the open events.

The queue between the engine and this stage is bounded: if this stage falls behind, the engine waits
for it, and the engine's own queue applies the overload policy (drops are counted there).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from audio_core.scoring import top_k
from streamd import messages
from streamd.job_queue import Job
from streamd.stages import ThreadStage
from streamd.status import PublisherLike
from streamd.streams import Stream

EventHook = Callable[[int, dict[str, Any]], dict[str, Any]]  # (stream index, event) -> event to publish
RESULT_QUEUE_BATCHES = 64
POLL_S = 0.05  # with no batch coming, how often the audio stops are looked at
Batch = tuple[list[Job], torch.Tensor]
_END = None
_IDLE: Batch = ([], torch.empty(0))  # no batch within POLL_S
log = logging.getLogger(__name__)


class ResultStage(ThreadStage):
    """Publishes what the engine scored."""

    name = "results"

    def __init__(
        self,
        streams: list[Stream],
        publisher: PublisherLike,
        model_name: str,
        labels: list[str],
        top_k: int,
        late_after_s: float,
        sample_rate: int,
        event_hooks: list[EventHook],
    ) -> None:
        super().__init__()
        self.streams = streams
        self.publisher = publisher
        self.model_name = model_name
        self.labels = labels
        self.k = min(top_k, len(labels))
        self.late_after_s = late_after_s
        self.sample_rate = sample_rate
        self.event_hooks = event_hooks  # shared with the daemon: integrations append to it
        self._queue: queue.Queue[Batch | None] = queue.Queue(RESULT_QUEUE_BATCHES)
        self._closed = threading.Event()
        self.failure: str | None = None  # why the stage stopped early, if it did
        self.lost_batches = 0  # batches that arrived after close (an engine that outlived its join)
        # the engine's (classified, handled) windows of a stream (Engine.done_with), set by the daemon
        self.done_with: Callable[[int], tuple[int, int]] | None = None

    # -- input (engine thread) -------------------------------------------------------------------------

    def submit(self, jobs: list[Job], scores: torch.Tensor) -> None:
        """Queue a scored batch (the engine's result callback); waits while the queue is full."""
        item = (jobs, scores.detach().cpu())
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        self.lost_batches += 1

    # -- stage -----------------------------------------------------------------------------------------

    def close(self) -> None:
        """No more input: publish what is queued, flush the open events, end."""
        if self._closed.is_set():
            return
        self._closed.set()
        while self.alive:
            try:
                self._queue.put(_END, timeout=0.1)  # a full queue: wait for the thread to make room
                return
            except queue.Full:
                continue

    def stop(self) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # -- work ------------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while (item := self._next()) is not _END:
                if item is not _IDLE:
                    self.publish_results(*item)
                for stream in self.streams:
                    self._end_at_stops(stream)
            for stream in self.streams:  # audio stops still pending end their events where the audio stopped
                self._end_at_stops(stream)
                self._publish_events(stream, stream.events.flush(stream.front.samples / self.sample_rate))
        except Exception as exc:  # a bug past the model (e.g. in a hook): end the run visibly
            log.exception("the result stage stopped")
            self.failure = f"result stage stopped: {type(exc).__name__}: {exc}"
            self._closed.set()  # the engine's next results are dropped, never waited for

    def publish_results(self, jobs: list[Job], scores: torch.Tensor) -> None:
        """Publish one scored batch: a prediction per window, then the events it opens or closes."""
        rows = scores.detach().float().cpu().numpy()
        ranked = [top_k(r, self.labels, self.k) for r in rows]  # ties as classify ranks them: lower first
        for job, best, row in zip(jobs, ranked, rows.tolist(), strict=True):
            stream = self.streams[job.stream]
            window = job.window
            stream.through_index = max(stream.through_index, window.index - 1)  # the earlier ones are through
            self._end_at_stops(stream)  # before this window: an audio stop it comes after
            wall = time.time()
            latency_ms = max(0.0, (time.monotonic() - job.ready_time) * 1000.0)
            self.publisher.publish(
                messages.prediction(
                    stream.name,
                    window.t_start,
                    window.t_end,
                    self.model_name,
                    best,
                    latency_ms,
                    level_dbfs=window.level_dbfs,
                    window_index=window.index,
                    wall_time=wall,
                )
            )
            stream.published_windows += 1
            stream.latencies_ms.append(latency_ms)
            if latency_ms > 1000.0 * self.late_after_s:
                stream.late_results += 1
            if window.stretch > stream.stretch:  # an outage: no event runs across it
                stream.stretch = window.stretch
                self._publish_events(stream, stream.events.flush(window.t_start, wall_time=wall))
            if window.t_start >= stream.events_from:  # (audio before an audio stop: its events have ended)
                scored = dict(zip(self.labels, row, strict=True))
                self._publish_events(stream, stream.events.update(window.t_start, window.t_end, scored, wall))
            stream.through_index = window.index  # its stop, if any, ends before the next window or batch

    def _next(self) -> Batch | None:
        """The next batch, ``_END``, or ``_IDLE`` when none came within ``POLL_S``."""
        try:
            return self._queue.get(timeout=POLL_S)
        except queue.Empty:
            return _IDLE

    def _end_at_stops(self, stream: Stream) -> None:
        """End ``stream``'s open events where its audio stopped (``AudioStop``), once every window
        submitted before the stop is through: published, or dropped or failed (``_all_handled``)."""
        while stream.audio_stops:
            stop = stream.audio_stops[0]
            if stream.through_index < stop.last_index and not self._all_handled(stream, stop.last_index + 1):
                return
            stream.events_from = max(stream.events_from, stop.t_end)
            self._publish_events(stream, stream.events.flush(stop.t_end, wall_time=time.time()))
            stream.audio_stops.popleft()  # after its events: a stream's "finished" waits for them

    def _all_handled(self, stream: Stream, submitted: int) -> bool:
        """The engine handled the first ``submitted`` windows of ``stream``, and published is every one
        it classified (none is on its way here)."""
        if self.done_with is None:
            return False
        classified, handled = self.done_with(stream.index)
        return handled >= submitted and stream.published_windows >= classified

    def _publish_events(self, stream: Stream, events: list[dict[str, Any]]) -> None:
        for event in events:
            self.publisher.publish(self._hooked(stream, event))

    def _hooked(self, stream: Stream, event: dict[str, Any]) -> dict[str, Any]:
        for hook in self.event_hooks:
            event = hook(stream.index, event)
        return event
