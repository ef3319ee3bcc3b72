"""``streamd listen``'s view of its connection: handshake problems, connections lost and re-opened, and a
publisher that never answers. ZeroMQ reconnects by itself and says little; this turns its monitor events
into stderr lines and counts."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass

import zmq
from zmq.utils.monitor import recv_monitor_message

from streamd import messages
from streamd.errors import StreamdError
from streamd.security import HandshakeWatch

log = logging.getLogger(__name__)

MAX_REPORTED_PROBLEMS = 3
# per frame, checked by ZeroMQ before it buffers one: with ``--hwm`` messages held, at most hwm x this
MAX_FRAME_BYTES = 2 * messages.MAX_MESSAGE_BYTES
RECONNECTING_EVENTS = zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_CONNECT_DELAYED | zmq.EVENT_CONNECTED
REOPEN_AFTER_S = 1.0
NO_PUBLISHER_NOTE_S = 5.0


@dataclass
class ListenCounts:
    """What one ``listen`` saw: messages passed on, malformed ones skipped, connections lost."""

    received: int = 0
    malformed: int = 0
    disconnects: int = 0


class ConnectionWatch:
    """Turns the SUB socket's monitor events into actions: a handshake problem worth stopping on raises
    StreamdError; an established connection that drops is counted and reported (the first few). ZeroMQ
    reconnects by itself (it says so with a retry event) except after a protocol error such as a frame over
    ``MAX_FRAME_BYTES``: when no retry follows within ``REOPEN_AFTER_S``, the connection is re-opened."""

    EVENTS = HandshakeWatch.EVENTS | zmq.EVENT_DISCONNECTED | RECONNECTING_EVENTS

    def __init__(self, sock: zmq.Socket, monitor: zmq.Socket, args: argparse.Namespace) -> None:
        self.sock, self.monitor, self.endpoint = sock, monitor, args.connect
        self.handshakes = HandshakeWatch(args.connect, curve=args.curve_server_key is not None)
        self.report = not args.dashboard
        self.established = False
        self.ever_established = False
        self.waiting_since = time.monotonic()
        self.lost_at: float | None = None

    def on_event(self, counts: ListenCounts, now: float) -> None:
        event = recv_monitor_message(self.monitor)
        kind = event["event"]
        if kind & RECONNECTING_EVENTS:
            self.lost_at = None
            return
        if kind == zmq.EVENT_DISCONNECTED:
            if self.established:  # a handshake that failed disconnects too; HandshakeWatch judges those
                self.established = False
                self.lost_at = now
                self._report_lost(counts)
            return
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.established = self.ever_established = True
        problem = self.handshakes.observe(kind, event["value"], now)
        if problem is not None:
            raise StreamdError(problem)

    def reopen_if_abandoned(self, now: float) -> None:
        """Re-open a connection that ZeroMQ has given up on (no retry since it dropped)."""
        if self.lost_at is not None and now - self.lost_at >= REOPEN_AFTER_S:
            self.lost_at = None
            try:
                self.sock.disconnect(self.endpoint)
                self.sock.connect(self.endpoint)
            except zmq.ZMQError as exc:
                raise StreamdError(f"cannot reconnect to {self.endpoint}: {exc.strerror}") from None

    def note_no_publisher(self, now: float) -> None:
        """One stderr line when no publisher has answered for ``NO_PUBLISHER_NOTE_S`` (a wrong address or
        a daemon not running: ZeroMQ keeps trying without a word)."""
        if self.report and not self.ever_established and now - self.waiting_since >= NO_PUBLISHER_NOTE_S:
            self.waiting_since = float("inf")  # said once
            print(
                f"streamd listen: no publisher at {self.endpoint} yet (still trying: is a daemon running "
                "there, and is the address right?)",
                file=sys.stderr,
                flush=True,
            )

    def _report_lost(self, counts: ListenCounts) -> None:
        counts.disconnects += 1
        if self.report and counts.disconnects <= MAX_REPORTED_PROBLEMS:
            print(
                f"streamd listen: lost the connection to {self.endpoint} (the publisher stopped, or sent "
                f"a frame over {MAX_FRAME_BYTES} bytes); reconnecting, messages sent meanwhile are lost",
                file=sys.stderr,
                flush=True,
            )


class HandshakeMonitor:
    """The handshakes of a connecting socket that is not a listener's (a daemon's publisher connected to a
    ``peer`` proxy): ``problem`` gives a definite refusal (a rejected key, CURVE on one side only). A
    failure without detail is what a proxy restarting behind a TCP forwarder looks like too: it is logged
    once it persists (``HandshakeWatch``), never fatal, and said again only after a handshake succeeded.
    A peer that has not answered at all after ``NO_PUBLISHER_NOTE_S`` (nothing listening there: ZeroMQ
    keeps trying without a word) is logged once too: what is published meanwhile reaches no one."""

    def __init__(self, sock: zmq.Socket, endpoint: str, curve: bool, peer: str) -> None:
        self.sock = sock
        self.endpoint, self.peer = endpoint, peer
        self.watch = HandshakeWatch(endpoint, curve=curve, peer=peer)
        self.monitor = sock.get_monitor_socket(HandshakeWatch.EVENTS)
        self.warned = False
        self.started = time.monotonic()
        self.answered = self.noted = self.refused = False

    def problem(self) -> str | None:
        """The definite refusal among the events so far (without waiting), or None."""
        found = None
        while self.monitor.poll(0, zmq.POLLIN):
            event = recv_monitor_message(self.monitor)
            kind, value = event["event"], event["value"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.warned = False
                self.answered = True
            said = self.watch.observe(kind, value, time.monotonic())
            if said is None:
                continue
            mismatch = (
                kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
            )
            if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH or mismatch:
                found = found or said
            elif not self.warned:
                self.warned = True
                log.warning("%s (still trying)", said)
        self.refused = self.refused or found is not None
        silent = not (self.answered or self.noted or self.refused)
        if silent and time.monotonic() - self.started >= NO_PUBLISHER_NOTE_S:
            self.noted = True  # said once
            log.warning(
                "no %s has answered at %s yet (still trying: is it running there, and is the address "
                "right?); what is published until it answers reaches no one",
                self.peer,
                self.endpoint,
            )
        return found

    def close(self) -> str | None:
        """Stop watching. Returns what this last look found that the caller reports as it reports
        ``problem`` (a failure of the run): a refusal, or a peer that never answered (nothing published
        reached it)."""
        late = self.problem()
        if not (late or self.answered or self.refused):
            late = f"no {self.peer} ever answered at {self.endpoint}: nothing published reached it"
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        return late
