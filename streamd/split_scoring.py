"""Windows of one batch scored side by side on CPU threads.

Torch's intra-op threads split one model call; a batch of several windows splits better by window: on
2 cores, two threads each scoring their own windows with one torch thread gave the residual CNN 12.9 ms
per window against 20.6 ms on one thread, where two intra-op threads inside a worker thread gained
little. ``SplitScorer`` cuts a batch into contiguous chunks, one per worker (the calling thread scores
the first, helper threads the rest), gives each chunk ``workers // chunks`` torch threads (so a single
window still gets them all), and returns the scores in the batch's order, each window's equal to scoring
it alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

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


class SplitScorer:
    """``score(features) -> (B, C)``: ``score_chunk`` over chunks of the batch on ``workers`` threads."""

    def __init__(self, score_chunk: Score, workers: int) -> None:
        self.score_chunk = score_chunk
        self.workers = max(1, workers)
        self._threads = threading.local()  # the torch threads each thread last set for itself
        self._pool: ThreadPoolExecutor | None = None
        if self.workers > 1:
            self._pool = ThreadPoolExecutor(self.workers - 1, thread_name_prefix="streamd-model")

    def __call__(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self._pool is None:  # one worker: the caller's own torch setting
            return self.score_chunk(features)
        bounds = chunk_bounds(len(features), self.workers)
        threads = max(1, self.workers // len(bounds))
        if len(bounds) == 1:
            return self._score(features, threads)
        futures = [self._pool.submit(self._score, features[a:b], threads) for a, b in bounds[1:]]
        first = self._score(features[bounds[0][0] : bounds[0][1]], threads)
        return torch.cat([first, *(f.result() for f in futures)])

    def _score(self, chunk: list[torch.Tensor], threads: int) -> torch.Tensor:
        if getattr(self._threads, "count", None) != threads:  # the setting is per thread (OpenMP)
            torch.set_num_threads(threads)
            self._threads.count = threads
        return self.score_chunk(chunk)

    def close(self) -> None:
        """Stop the helper threads (after the chunks they are scoring)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
