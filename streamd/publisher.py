"""The publisher: one thread owns the ZeroMQ PUB socket and sends ``[topic, JSON]`` for every message.

``publish`` only puts the message on a bounded queue (a full queue drops and counts; with ``block``, the
overload policy of a replay, it waits for room instead: a file's results are never dropped). The
publisher thread encodes, sends without blocking (the socket's SNDHWM makes ZeroMQ drop for slow or
stalled subscribers instead of waiting for them) and then hands the message to each sink (dashboard,
JSON-lines printer). The socket is an XPUB, which behaves as a PUB socket and also lets the thread see
subscriptions, so callers can wait until a subscriber is listening. Connected to a proxy, a handshake it
refuses is the publisher's ``failure`` (the daemon ends the run on it).

Every message sent carries ``seq`` (per stream, no holes; ``streamd.sequence``). What ZeroMQ drops past a
subscriber's high-water mark is invisible here: libzmq has no per-subscriber drop count, and
``ZMQ_XPUB_NODROP`` refuses a send for every subscriber when one pipe is full (one stalled subscriber
would then starve all). So each subscriber counts its own losses from the gaps in ``seq``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from streamd import messages
from streamd.connection_watch import HandshakeMonitor
from streamd.endpoints import PublishError, bind_reason, check_endpoint
from streamd.handled_queue import wait_until_handled
from streamd.security import (
    Security,
    check_bind_allowed,
    load_client_keys,
    load_server_keys,
    secure_client_socket,
    secure_server_socket,
)
from streamd.sequence import SequenceStamper
from streamd.subscriptions import Subscriptions

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
IDLE_POLL_S = 0.02
BATCH = 256
MAX_LINGER_S = 0.5

log = logging.getLogger(__name__)

Sink = Callable[[dict[str, Any]], None]


class Publisher:
    """Publishes message dicts (see ``streamd.messages``) on ``endpoint`` from its own thread."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        security: Security | None = None,
        sndhwm: int = 10000,
        queue_size: int = 10000,
        connect: bool = False,
        client_keys: tuple[Path, Path] | None = None,
        block: bool = False,
    ) -> None:
        """``connect``: connect to ``endpoint`` (a ``streamd proxy`` frontend) instead of binding it, as a
        CURVE client when ``client_keys`` (server public key file, own secret key file) are given.
        ``block``: ``publish`` waits for room in a full queue (until the publisher stops) instead of
        dropping."""
        if sndhwm < 1 or queue_size < 1:
            raise ValueError("sndhwm and queue_size must be >= 1")
        self._requested_endpoint = endpoint
        self._security = security or Security()
        self._sndhwm = sndhwm
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=queue_size)
        self._sinks: tuple[Sink, ...] = ()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._subscriptions = Subscriptions()
        self._drop_lock = threading.Lock()
        self._drain_deadline = 0.0
        self._endpoint: str | None = None
        self._published = self._dropped = self._sink_errors = self._invalid = 0
        self._seq = SequenceStamper()
        self._connect = connect
        self._client_keys = client_keys
        self._block = block
        self._released = threading.Event()  # release(): a blocking publisher drops again
        self.failure: str | None = None  # connected to a proxy that refuses the handshake: nothing arrives

    @property
    def endpoint(self) -> str:
        """The endpoint actually bound (``:*`` or ``:0`` resolved); the requested one before start."""
        return self._endpoint or self._requested_endpoint

    @property
    def counters(self) -> dict[str, int]:
        """``published``, ``publish_dropped``, ``sink_errors`` and ``invalid_messages`` so far."""
        return {
            "published": self._published,
            "publish_dropped": self._dropped,
            "sink_errors": self._sink_errors,
            "invalid_messages": self._invalid,
        }

    @property
    def loss_note(self) -> str:
        """What the publisher cannot count, and how subscribers see it (for the starting status)."""
        return (
            f"a subscriber more than {self._sndhwm} messages behind (SNDHWM) loses messages without the "
            "publisher knowing (publish_dropped counts only the publisher's own queue); every message "
            "carries seq, so each subscriber counts its gaps (streamd listen, the dashboard)"
        )

    def add_sink(self, fn: Sink) -> None:
        """Call ``fn(msg)`` in the publisher thread for every valid message (not blocking, not mutating);
        one raising ``BrokenPipeError`` (its reader went away) is dropped quietly, other errors counted."""
        self._sinks = (*self._sinks, fn)

    def check(self) -> None:
        """``start``'s checks, binding and connecting nothing: the endpoint, a bind's rules, the key files."""
        check_endpoint(self._requested_endpoint, "connect to" if self._connect else "bind")
        if self._connect and self._client_keys is not None:
            load_client_keys(*self._client_keys)
        elif not self._connect:
            check_bind_allowed(self._requested_endpoint, self._security)
            load_server_keys(self._security)

    def start(self) -> None:
        """Bind (in the caller's thread; PublishError/SecurityError on failure) and start the thread."""
        if self._thread is not None:
            return  # already bound (a command binds before loading its model): nothing to do
        self.check()
        context = zmq.Context()
        sock = context.socket(zmq.XPUB)
        auth = watch = None
        try:
            sock.sndhwm = self._sndhwm
            sock.linger = 0
            sock.ipv6 = "://[" in self._requested_endpoint  # an IPv6 literal such as tcp://[::1]:5556
            if self._connect:
                if self._client_keys is not None:
                    secure_client_socket(sock, *self._client_keys)
                # watched before connecting: a proxy refusing the key says so once, at once
                watch = HandshakeMonitor(
                    sock, self._requested_endpoint, self._client_keys is not None, "proxy"
                )
                sock.connect(self._requested_endpoint)
            else:
                auth = secure_server_socket(context, sock, self._security)
                sock.bind(self._requested_endpoint)
        except BaseException as exc:
            if watch is not None:
                watch.close()
            sock.close(linger=0)
            if auth is not None:
                auth.stop()
            context.term()
            if isinstance(exc, zmq.ZMQError):
                reason = bind_reason(exc.errno)
                verb = "connect to" if self._connect else "bind"
                raise PublishError(f"cannot {verb} {self._requested_endpoint}: {reason}") from None
            raise
        self._endpoint = sock.last_endpoint.decode()
        self._thread = threading.Thread(
            target=self._run, args=(context, sock, auth, watch), name="streamd-publisher", daemon=True
        )
        self._thread.start()

    def publish(self, msg: dict[str, Any]) -> None:
        """Queue ``msg`` for sending. A full queue drops and counts (``block``: waits for room, until
        ``release``); a stopped publisher drops and counts."""
        while not self._stopping.is_set():
            wait = self._block and not self._released.is_set()
            try:
                self._queue.put(msg, timeout=0.1) if wait else self._queue.put_nowait(msg)
                return
            except queue.Full:
                if not wait or self._thread is None or not self._thread.is_alive():
                    break  # nobody will make room: drop and count rather than wait forever
        self._count_drop()

    def release(self) -> None:
        """Stop waiting for room (a ``block`` publisher): from now on a full queue drops and counts, so
        that a stop (Ctrl-C, SIGTERM) is not held up by a sink whose reader stopped reading."""
        self._released.set()

    def flush(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until every message queued so far has been sent and handed to the
        sinks, so that counters read next include them (the daemon's final status); False on timeout."""
        if self._thread is None or not self._thread.is_alive():
            return self._queue.unfinished_tasks == 0
        return wait_until_handled(self._queue, timeout)

    def wait_for_subscriber(self, timeout: float) -> bool:
        """Wait until at least one (authenticated) subscriber has subscribed; False on timeout."""
        return self._subscriptions.any.wait(timeout)

    def stop(self, timeout: float = 1.0) -> None:
        """Send what is queued (within ``timeout``), close the socket (bounded linger), join the thread."""
        self._drain_deadline = time.monotonic() + max(0.0, timeout)
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout + MAX_LINGER_S + 0.5)
            if self._thread.is_alive():
                log.warning("publisher thread did not stop within %.1f s (a sink is blocking?)", timeout)

    def _refused(self, problem: str) -> None:
        self.failure = problem  # the daemon ends the run on it
        log.error("%s: nothing published reaches it", problem)

    def _count_drop(self) -> None:
        with self._drop_lock:
            self._dropped += 1

    def _run(self, context: zmq.Context, sock: zmq.Socket, auth: Any, watch: HandshakeMonitor | None) -> None:
        """``watch``: connected to a proxy, its handshakes (one refusing this daemon's would otherwise take
        every message silently)."""
        try:
            self._loop(sock, watch)
        except Exception:  # a bug here must not take the daemon down silently
            log.exception("publisher thread failed")
        finally:
            if watch is not None and (late := watch.close()) and self.failure is None:
                self.failure = late  # seen in the last look: the daemon says it as the run's error
            linger_s = min(MAX_LINGER_S, max(0.0, self._drain_deadline - time.monotonic()))
            sock.close(linger=int(linger_s * 1000))
            if auth is not None:
                auth.stop()
            context.term()
            self._count_unsent()

    def _loop(self, sock: zmq.Socket, watch: HandshakeMonitor | None) -> None:
        while True:
            self._subscriptions.read(sock)
            if watch is not None and self.failure is None and (problem := watch.problem()):
                self._refused(problem)
            if self._stopping.is_set() and (self._queue.empty() or time.monotonic() >= self._drain_deadline):
                return
            try:
                msg = self._queue.get(timeout=IDLE_POLL_S)
            except queue.Empty:
                continue
            self._send_one(sock, msg)
            for _ in range(BATCH - 1):  # send a burst before looking at subscriptions again
                try:
                    msg = self._queue.get_nowait()
                except queue.Empty:
                    break
                self._send_one(sock, msg)

    def _send_one(self, sock: zmq.Socket, msg: dict[str, Any]) -> None:
        """``_send`` a message taken from the queue, marking it handled whatever happens (``flush``)."""
        try:
            self._send(sock, msg)
        finally:
            self._queue.task_done()

    def _send(self, sock: zmq.Socket, msg: dict[str, Any]) -> None:
        stream = msg.get("stream")
        try:
            msg = messages.with_seq(msg, self._seq.peek(stream if isinstance(stream, str) else ""))
            frames = messages.encode(msg)
        except ValueError as exc:
            self._invalid += 1
            if self._invalid == 1:
                log.error("dropping an invalid message: %s", exc)
            return
        try:
            sock.send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.Again:
            self._count_drop()
        else:
            self._published += 1
            self._seq.advance(msg["stream"])
        for sink in self._sinks:
            try:
                encoded = getattr(sink, "write_encoded", None)  # a printer of JSON lines: encoded once
                if encoded is not None:
                    encoded(msg, frames[1])
                else:
                    sink(msg)
            except BrokenPipeError:  # a printer whose reader went away (``--json | head -1``): not an error
                self._sinks = tuple(s for s in self._sinks if s is not sink)
                log.debug("a message sink's reader went away; the sink is dropped")
            except Exception:
                self._sink_errors += 1
                if self._sink_errors == 1:
                    log.exception("a message sink failed (further failures are only counted)")

    def _count_unsent(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return
            self._count_drop()
            self._queue.task_done()
