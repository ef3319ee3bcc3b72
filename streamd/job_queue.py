"""The engine's input: a ``Job`` (one window of one stream) and the bounded ``JobQueue`` shared by the
producers and the engine thread.

When the queue is full the overload policy decides: ``drop_oldest`` discards the oldest queued window (live
capture must never wait) and ``block`` makes the producer wait (replay at full speed).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from audio_core.windows import Window

POLICIES = ("drop_oldest", "block")


@dataclass
class Job:
    """A window of one stream, and the monotonic time its last sample was written to the ring."""

    stream: int
    window: Window
    ready_time: float


class JobQueue:
    """Bounded FIFO shared by the producer(s) and the engine thread."""

    def __init__(self, maxsize: int, policy: str) -> None:
        if maxsize <= 0:
            raise ValueError("queue size must be positive")
        if policy not in POLICIES:
            raise ValueError(f"overload policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        self.maxsize = maxsize
        self.policy = policy
        self._items: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._abandoned = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, job: Job) -> Job | None:
        """Enqueue; returns the job that was dropped to make room (possibly ``job`` itself), else None."""
        with self._cond:
            while self.policy == "block" and len(self._items) >= self.maxsize and not self._abandoned:
                self._cond.wait(0.1)
            if self._closed or self._abandoned:
                return job
            dropped = self._items.popleft() if len(self._items) >= self.maxsize else None
            self._items.append(job)
            self._cond.notify_all()
            return dropped

    def wait_for_room(self, timeout: float) -> bool:
        """Wait until a job can be queued without waiting or dropping; False on timeout."""
        with self._cond:
            if len(self._items) >= self.maxsize and not self._abandoned:
                self._cond.wait(timeout)
            return len(self._items) < self.maxsize or self._abandoned

    def get_batch(self, max_items: int, timeout: float, fill_s: float = 0.0) -> list[Job] | None:
        """Up to ``max_items`` jobs (waiting at most ``timeout`` for one); None once closed and empty.

        ``fill_s`` > 0: once a job is there, wait up to that long more for ``max_items`` (or a full queue,
        where a ``block`` producer waits anyway, or the end), so that a fast producer's jobs come in one
        batch rather than a few at a time (recurrent catch-up: one deep chunk instead of many shallow)."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if not self._items:
                return None if self._closed else []
            if fill_s > 0:
                self._fill(min(max_items, self.maxsize), fill_s)
            batch = [self._items.popleft() for _ in range(min(max_items, len(self._items)))]
            self._cond.notify_all()
            return batch

    def _fill(self, wanted: int, fill_s: float) -> None:
        """Wait (holding the lock) until ``wanted`` jobs are queued, the queue ends or ``fill_s`` passes."""
        deadline = time.monotonic() + fill_s
        while len(self._items) < wanted and not self._closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)

    def close(self) -> None:
        """No more jobs will come; the consumer drains what is queued."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def abandon(self) -> list[Job]:
        """Stop now: release blocked producers and return what was still queued."""
        with self._cond:
            self._closed = True
            self._abandoned = True
            left = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return left
