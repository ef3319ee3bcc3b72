"""What became of the messages of an MQTT sink, per stream and over all streams; its queue's rule.

A message is ``mqtt_delivered`` once paho confirms it (``on_publish``: under QoS 1 the broker's PUBACK,
under QoS 2 its PUBCOMP, under QoS 0 only the write to the connection, which the broker never
acknowledges), and ``mqtt_undelivered`` when it was dropped or is still unconfirmed when given up on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, deque
from typing import Any

log = logging.getLogger("streamd.mqtt_sink")

DELIVERED, UNDELIVERED = "mqtt_delivered", "mqtt_undelivered"


class Deliveries:
    """Messages handed to paho and not yet confirmed (by their mid), and the counts.

    Hold ``lock`` across a ``publish()`` and the ``note`` of its mid: ``settle`` takes it too, so a
    confirmation is never settled before its mid is known. ``confirm`` (paho's ``on_publish``) takes no
    lock: paho calls it holding a lock of its own that ``publish()`` takes as well (a deadlock otherwise).
    """

    def __init__(self, streams: list[str]) -> None:
        self.lock = threading.RLock()
        self.confirmed = threading.Event()  # set on each confirmation
        self._pending: dict[int, str] = {}  # mid -> stream
        self._confirmations: deque[int] = deque()
        self._counts_lock = threading.Lock()
        self._totals: Counter[str] = Counter()
        self._by_stream: dict[str, Counter[str]] = {s: Counter() for s in streams}
        self._warned = False

    def note(self, mid: int, stream: str) -> None:
        """A message of ``stream`` that paho took, to be confirmed as ``mid`` (call holding ``lock``)."""
        self._pending[mid] = stream

    def confirm(self, mid: int) -> None:
        """paho confirmed ``mid`` (its network thread; announcements' mids are ignored when settled)."""
        self._confirmations.append(mid)
        self.confirmed.set()

    def settle(self) -> None:
        """Count the confirmed messages as delivered."""
        with self.lock:
            while self._confirmations:
                stream = self._pending.pop(self._confirmations.popleft(), None)
                if stream is not None:
                    self._count(stream, DELIVERED)

    def outstanding(self) -> int:
        """Messages handed to paho and not confirmed yet."""
        self.settle()
        return len(self._pending)

    def wait_settled(self, deadline: float) -> bool:
        """Wait (until ``time.monotonic()`` is ``deadline``) for every outstanding confirmation."""
        while True:
            self.confirmed.clear()
            left = deadline - time.monotonic()
            if not self.outstanding() or left <= 0:
                return not self.outstanding()
            self.confirmed.wait(min(left, 0.05))

    def give_up(self, why: str) -> None:
        """Count what is still unconfirmed (confirmations come no more) as undelivered."""
        with self.lock:
            self.settle()
            streams, self._pending = list(self._pending.values()), {}
        for stream in streams:
            self.lost(why, stream)

    def lost(self, why: str, stream: str) -> None:
        """A message of ``stream`` not delivered; the first one is a warning naming ``why``."""
        if self._count(stream, UNDELIVERED):
            log.warning("MQTT: a message was not delivered (%s); further losses are only counted", why)

    def _count(self, stream: str, key: str) -> bool:
        with self._counts_lock:
            self._totals[key] += 1
            self._by_stream.setdefault(stream, Counter())[key] += 1
            first = key == UNDELIVERED and not self._warned
            self._warned = self._warned or first
        return first

    def counters(self, stream: str | None = None) -> dict[str, int]:
        """Delivered and undelivered messages of ``stream`` (None: of all streams)."""
        self.settle()
        with self._counts_lock:
            counts = self._totals if stream is None else self._by_stream.get(stream, Counter())
            return {DELIVERED: counts[DELIVERED], UNDELIVERED: counts[UNDELIVERED]}


def put_newest(q: queue.Queue, item: Any) -> list[Any]:
    """Put ``item`` on ``q`` without waiting; if it is full, the oldest items make room: they are returned
    (and marked done, so that ``join`` and ``wait_until_handled`` do not wait for them)."""
    dropped = []
    while True:
        try:
            q.put_nowait(item)
            return dropped
        except queue.Full:
            pass
        try:
            dropped.append(q.get_nowait())
        except queue.Empty:
            continue
        q.task_done()


def put_back(q: queue.Queue, item: Any) -> None:
    """Return ``item``, just taken and not marked done, to the front of ``q`` (beyond its size if need be:
    ``put_newest`` then drops it first, as the oldest)."""
    with q.mutex:
        q.queue.appendleft(item)
        q.not_empty.notify()


def drain(q: queue.Queue) -> list[Any]:
    """Take (and mark done) what is left on ``q``."""
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out
        q.task_done()
