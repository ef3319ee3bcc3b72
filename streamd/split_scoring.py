"""Windows of one batch scored side by side on CPU threads.

A batch of several windows splits better by window than by torch's intra-op threads: the chunks need no
barrier between them, so a core taken for a moment by the feature or capture thread delays one chunk, not
every operation of the call. Measured on 2 cores with the default CNN (10 minutes replayed at --speed max;
16 live streams' steady p99 latency; three runs against three): two workers each scoring their own
windows with one torch thread, 12.2-16.3 s and 79-107 ms, against 16.3-17.7 s and 86-122 ms on one
thread; one run with the two threads as torch's intra-op threads of each call: 16.1 s and 133 ms.

``SplitScorer`` cuts a batch into contiguous chunks, one per worker (the calling thread scores the first,
helper threads the rest), gives each chunk ``(workers - 1) // chunks`` torch threads but at least one (a
single window gets all but one: barrier-synchronised work keeps a core free for the other stages), and
returns the scores in the batch's order, each window's equal to scoring it alone. With ``per_window``
(the engine's choice on CPU) each window is its own model call, so a window's scores are bit for bit the
same whatever batch it came in and a replay gives the same output every time (10 minutes replayed on
2 cores: 15.4 and 17.5 s one window per call, 15.3 and 15.5 s chunks in one call each, alternating runs;
the default CNN alone took 24 ms per window at batch 1 and 29 ms at batch 4 on one thread). Helpers are
daemon threads, like the engine's own.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, wait

import torch

Score = Callable[[list[torch.Tensor]], torch.Tensor]


def chunk_bounds(count: int, parts: int) -> list[tuple[int, int]]:
    """``[start, end)`` of ``min(parts, count)`` contiguous chunks of ``count`` items, sizes differing by
    at most one (the larger first)."""
    parts = max(1, min(parts, count))
    size, extra = divmod(count, parts)
    bounds, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds


def chunk_threads(workers: int, chunks: int) -> int:
    """Torch threads for each of ``chunks`` chunks scored at once by ``workers`` workers."""
    return max(1, (workers - 1) // max(1, chunks))


class SplitScorer:
    """``score(features) -> (B, C)``: ``score_chunk`` over chunks of the batch on ``workers`` threads."""

    def __init__(self, score_chunk: Score, workers: int, *, per_window: bool = False) -> None:
        self.score_chunk = score_chunk
        self.workers = max(1, workers)
        self.per_window = per_window
        self._local = threading.local()  # the torch threads each thread last set for itself
        self._tasks: queue.SimpleQueue[tuple[Future, list[torch.Tensor], int] | None] = queue.SimpleQueue()
        self._helpers: list[threading.Thread] = []

    def __call__(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self.workers == 1:  # one worker: the caller's own torch setting
            return self._calls(features)
        bounds = chunk_bounds(len(features), self.workers)
        threads = chunk_threads(self.workers, len(bounds))
        if len(bounds) == 1:
            return self._score(features, threads)
        self._start_helpers()
        futures: list[Future] = []
        for a, b in bounds[1:]:
            future: Future = Future()
            self._tasks.put((future, features[a:b], threads))
            futures.append(future)
        try:
            first = self._score(features[bounds[0][0] : bounds[0][1]], threads)
        finally:
            wait(futures)  # no chunk of this batch may still run when the next batch starts
        return torch.cat([first, *(f.result() for f in futures)])

    def _score(self, chunk: list[torch.Tensor], threads: int) -> torch.Tensor:
        if getattr(self._local, "threads", None) != threads:  # the setting is per thread (OpenMP)
            torch.set_num_threads(threads)
            self._local.threads = threads
        return self._calls(chunk)

    def _calls(self, chunk: list[torch.Tensor]) -> torch.Tensor:
        if self.per_window and len(chunk) > 1:
            return torch.cat([self.score_chunk([window]) for window in chunk])
        return self.score_chunk(chunk)

    def _start_helpers(self) -> None:
        while len(self._helpers) < self.workers - 1:
            helper = threading.Thread(
                target=self._serve, name=f"streamd-model-{len(self._helpers) + 1}", daemon=True
            )
            helper.start()
            self._helpers.append(helper)

    def _serve(self) -> None:
        while (task := self._tasks.get()) is not None:
            future, chunk, threads = task
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(self._score(chunk, threads))
                except BaseException as exc:  # handed to the caller, which counts it as a model error
                    future.set_exception(exc)

    def close(self, timeout: float | None = None) -> None:
        """Stop the helper threads once they finish what they are scoring; a later call starts new ones."""
        helpers, self._helpers = self._helpers, []
        for _ in helpers:
            self._tasks.put(None)
        for helper in helpers:
            helper.join(timeout)
