"""The result stage (its own thread): the engine's scores -> top-k, messages, events, latency -> publisher.

The engine hands each scored batch to ``submit`` (on the engine thread), which only queues it; this
stage's thread takes the batches in order and, per window, publishes the prediction (top-k labels, level,
latency from the moment the window's last sample reached the ring), counts late results (older than the
time between two results) and runs the stream's event detector; every event passes through the event
hooks (integrations, e.g. clips add their file) before it is published. ``close`` (also what ``stop``
does) ends it once everything queued before it is published, then flushes the open events.

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

from streamd import messages
from streamd.job_queue import Job
from streamd.stages import ThreadStage
from streamd.status import PublisherLike
from streamd.streams import Stream

EventHook = Callable[[int, dict[str, Any]], dict[str, Any]]  # (stream index, event) -> event to publish
RESULT_QUEUE_BATCHES = 64
_END = None
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
        self._queue: queue.Queue[tuple[list[Job], torch.Tensor] | None] = queue.Queue(RESULT_QUEUE_BATCHES)
        self._closed = threading.Event()
        self.failure: str | None = None  # why the stage stopped early, if it did
        self.lost_batches = 0  # batches that arrived after close (an engine that outlived its join)

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
            while (item := self._queue.get()) is not _END:
                self.publish_results(*item)
            for stream in self.streams:
                for msg in stream.events.flush(stream.front.samples / self.sample_rate):
                    self.publisher.publish(self._hooked(stream, msg))
        except Exception as exc:  # a bug past the model (e.g. in a hook): end the run visibly
            log.exception("the result stage stopped")
            self.failure = f"result stage stopped: {type(exc).__name__}: {exc}"
            self._closed.set()  # the engine's next results are dropped, never waited for

    def publish_results(self, jobs: list[Job], scores: torch.Tensor) -> None:
        """Publish one scored batch: a prediction per window, then the events it opens or closes."""
        top_scores, top_index = torch.topk(scores, self.k, dim=1)
        for job, values, indices, row in zip(
            jobs, top_scores.tolist(), top_index.tolist(), scores.tolist(), strict=True
        ):
            stream = self.streams[job.stream]
            window = job.window
            wall = time.time()
            latency_ms = max(0.0, (time.monotonic() - job.ready_time) * 1000.0)
            self.publisher.publish(
                messages.prediction(
                    stream.name,
                    window.t_start,
                    window.t_end,
                    self.model_name,
                    [(self.labels[i], v) for i, v in zip(indices, values, strict=True)],
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
                for event in stream.events.flush(window.t_start, wall_time=wall):
                    self.publisher.publish(self._hooked(stream, event))
            scores_by_label = dict(zip(self.labels, row, strict=True))
            for event in stream.events.update(window.t_start, window.t_end, scores_by_label, wall_time=wall):
                self.publisher.publish(self._hooked(stream, event))

    def _hooked(self, stream: Stream, event: dict[str, Any]) -> dict[str, Any]:
        for hook in self.event_hooks:
            event = hook(stream.index, event)
        return event
