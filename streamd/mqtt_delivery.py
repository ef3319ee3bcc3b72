"""What became of the messages of an MQTT sink, per stream and over all streams; its queue (``Outbox``).

The unit is a message the sink accepted (one the publisher handed it that is to go out at all: of
``[mqtt] types``, a prediction ``prediction_interval_s`` lets through (in stream time: its ``t_end``; a
stream's last one held back goes at its end), an event driving a binary sensor),
counted once whatever it takes on the wire. It is ``mqtt_delivered`` once paho confirms its body (or, for
an event not in ``types``, its binary-sensor state; an event's state sent before its body is not counted)
(``on_publish``: under QoS 1 the broker's PUBACK, under QoS 2 its PUBCOMP, under QoS 0 only the write to
the connection, which the broker never acknowledges), and ``mqtt_undelivered`` when it was dropped or was
not confirmed when given up on (written off: at the daemon's finish, at stop). A written-off message that
paho still confirms later stays undelivered: the final status already counted it, and counters only grow.
"""

from __future__ import annotations

import itertools
import logging
import math
import queue
import threading
import time
from collections import Counter, deque
from typing import Any

from streamd import messages
from streamd.config_sections import MqttSection
from streamd.errors import ConfigError

log = logging.getLogger("streamd.mqtt_sink")

DELIVERED, UNDELIVERED = "mqtt_delivered", "mqtt_undelivered"
FINAL_STATES = ("finished", "stopped")  # a stream's status after its last result
Item = tuple[int, dict[str, Any]]  # a message and its number (the order the sink accepted them in)


class Deliveries:
    """Messages handed to paho and not yet confirmed (by their mid), and the counts.

    Hold ``lock`` across a ``publish()`` and the ``note`` of its mid: ``settle`` takes it too, so a
    confirmation is never settled before its mid is known. ``confirm`` (paho's ``on_publish``) takes no
    lock: paho calls it holding a lock of its own that ``publish()`` takes as well (a deadlock otherwise).
    """

    def __init__(self, streams: list[str]) -> None:
        self.lock = threading.RLock()
        self.confirmed = threading.Event()  # set on each confirmation
        # messages accepted before it (by their number) are written off: counted, never sent (see write_off)
        self.cutoff: float = 0
        self.written_off_why = ""
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

    def written_off(self, number: int) -> bool:
        """Whether message ``number`` was written off (then counted by whoever holds it, never sent)."""
        return number < self.cutoff

    def write_off(self, before: float, why: str) -> None:
        """Messages numbered below ``before`` are undelivered: those unconfirmed now are counted here, any
        other is counted where it is (queue, thread) instead of being sent. Call holding ``lock``."""
        self.cutoff, self.written_off_why = max(self.cutoff, before), why
        self.give_up(why)

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


class FrontQueue(queue.Queue):
    """A FIFO queue of messages on their way to the broker that can also take one back at its front
    (a message taken, not written, returned to go first once the broker is back)."""

    def put_newest(self, item: Any) -> list[Any]:
        """Put ``item`` without waiting; if full, the oldest items make room: they are returned (and
        marked done, so that ``join`` and ``wait_until_handled`` do not wait for them)."""
        dropped = []
        while True:
            try:
                self.put_nowait(item)
                return dropped
            except queue.Full:
                pass
            try:
                dropped.append(self.get_nowait())
            except queue.Empty:
                continue
            self.task_done()

    def put_back(self, item: Any) -> bool:
        """Return ``item``, just taken and not marked done, to the front; False (nothing changed) if the
        queue is full meanwhile: ``item``, older than all on it, is the one to drop then."""
        with self.not_full:
            if 0 < self.maxsize <= self._qsize():
                return False
            self.queue.appendleft(item)  # still counted as unfinished: it was never marked done
            self.not_empty.notify()
            return True

    def drain(self) -> list[Any]:
        """Take (and mark done) what is left."""
        out = []
        while True:
            try:
                out.append(self.get_nowait())
            except queue.Empty:
                return out
            self.task_done()


class Outbox:
    """The sink's bounded queue of the messages it accepted, numbered, and the binary sensors' states,
    which an event changes even when it is dropped (a connection's snapshot must not say ``ON`` again for
    an event whose end was lost). Hold ``lock`` across a state's publish and across a snapshot."""

    def __init__(self, cfg: MqttSection, labels: list[str], deliveries: Deliveries) -> None:
        self.deliveries = deliveries
        self.queue = FrontQueue(maxsize=cfg.queue_size)
        self.types = set(cfg.types)
        if unknown := self.types - set(messages.MESSAGE_TYPES):
            raise ConfigError(f"mqtt.types: unknown message types {sorted(unknown)}")
        self.binary = set(labels) if cfg.discovery else set()  # labels whose events drive binary sensors
        self.interval_s = cfg.prediction_interval_s
        self.active: set[tuple[str, str]] = set()  # (stream, label) of the open events of binary sensors
        self.lock = threading.RLock()
        self._changed_by: dict[tuple[str, str], int] = {}  # the number of the event last applied
        self._last_prediction: dict[str, float] = {}  # stream -> the t_end of its last prediction accepted
        self._held: dict[str, dict[str, Any]] = {}  # stream -> its newest prediction held back since then
        self._numbers = itertools.count()

    def accept(self, msg: dict[str, Any]) -> list[Item]:
        """What to queue for ``msg``: itself numbered, unless it would never be sent (not in ``types`` nor
        driving a binary sensor; a prediction within ``prediction_interval_s`` of stream time after its
        stream's last, held back instead). Before a stream's final status (``finished``, ``stopped``), its
        prediction held back last: the sensor ends on the stream's last label."""
        kind, stream = msg["type"], msg["stream"]
        out = self.release_held(stream) if kind == "status" and msg.get("state") in FINAL_STATES else []
        if kind == "prediction" and kind in self.types and self.interval_s > 0:
            with self.lock:
                # a stream's time going back (a new source under its name) starts its interval again
                if 0 <= msg["t_end"] - self._last_prediction.get(stream, -math.inf) < self.interval_s:
                    self._held[stream] = msg
                    return out
                self._last_prediction[stream] = msg["t_end"]
                self._held.pop(stream, None)
        elif kind not in self.types and not self.drives_sensor(msg):
            return out
        return [*out, (self.number(), msg)]

    def release_held(self, stream: str | None = None) -> list[Item]:
        """The predictions held back last (of ``stream``; None: of every stream), numbered, no longer held."""
        with self.lock:
            streams = list(self._held) if stream is None else [stream]
            held = [msg for s in streams if (msg := self._held.pop(s, None)) is not None]
        return [(self.number(), msg) for msg in held]

    def number(self) -> int:
        """The next message's number (below it: every message accepted so far)."""
        return next(self._numbers)

    def drives_sensor(self, msg: dict[str, Any]) -> bool:
        return msg["type"] == "event" and msg["label"] in self.binary

    def apply(self, item: Item) -> bool:
        """Put an event's change into ``active`` unless a newer one of its sensor is there; whether the
        sensor is on now."""
        number, msg = item
        key = (msg["stream"], msg["label"])
        with self.lock:
            if number >= self._changed_by.get(key, -1):
                self._changed_by[key] = number
                (self.active.add if msg["state"] == "start" else self.active.discard)(key)
            return key in self.active

    def put(self, item: Item, full: str) -> None:
        """Queue ``item`` (counted at once once stopped); a full queue drops its oldest (``full``: why)."""
        if self.deliveries.cutoff == math.inf:
            self.lose(item, "")
            return
        for oldest in self.queue.put_newest(item):  # the newest states survive a long outage
            self.lose(oldest, full)

    def put_back(self, item: Item, full: str) -> bool:
        """Return ``item``, just taken, to the front of the queue; False once it is counted lost instead
        (written off, or the queue filled meanwhile: it is the oldest)."""
        with self.deliveries.lock:  # against write_off: either drained by it, or seen written off here
            if not self.deliveries.written_off(item[0]) and self.queue.put_back(item):
                return True
        return self.lose(item, full)

    def write_off(self, why: str, *, closed: bool) -> None:
        """Count every message accepted so far (``closed``: and any later) and not confirmed as undelivered;
        the one the sink's thread holds it counts itself, without sending it."""
        with self.deliveries.lock:  # the thread publishes and puts back under it: each is counted once
            self.deliveries.write_off(math.inf if closed else self.number(), why)
            left = self.queue.drain()
        for item in left:
            self.lose(item, why)

    def lose(self, item: Item, why: str) -> bool:
        """Count ``item`` undelivered, for ``why`` or the reason it was written off; False. An event still
        changes its sensor's state (for the next connection's snapshot)."""
        if self.deliveries.written_off(item[0]):
            why = self.deliveries.written_off_why
        if self.drives_sensor(item[1]):
            self.apply(item)
        self.deliveries.lost(why, item[1]["stream"])
        return False
