"""``streamd listen``: subscribe to a streamd publisher and print every message as one JSON line.

Stops on Ctrl-C / SIGTERM (exit 0), after ``--count`` messages or ``--seconds`` (with both, fewer than
``--count`` by then is exit 1: a check tells a silent publisher). Frames are read one at a time with a
per-frame size bound, only JSON is decoded; malformed messages are skipped and counted on stderr. Every
gap in a stream's ``seq`` (messages ZeroMQ dropped because this subscriber fell more than the
publisher's high-water mark behind) is one line on stderr as it is seen (not with ``--dashboard``,
which shows a "missed" figure) and a total at exit; not with a ``--topic`` that selects message types
(``seq`` counts every type, so the types left out would look lost). A stream whose ``seq`` goes back and
forth (two publishers of one stream name) is warned about once, and its losses are not counted: the
total at exit leaves it out and says so, with any gap line printed before it was told shared. A frame
over ``messages.MAX_MESSAGE_BYTES`` is malformed; one over ``MAX_FRAME_BYTES`` (a memory bound) makes
ZeroMQ drop the connection for good, so the listener re-opens it. Every lost connection (that, or the
publisher stopped) is one line on stderr as it happens (the first few) and a total at exit; what the
publisher sends meanwhile is lost. ``--curve-server-key`` / ``--curve-secret-key`` authenticate to a
CURVE publisher.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from streamd import messages
from streamd.connection_watch import MAX_FRAME_BYTES, MAX_REPORTED_PROBLEMS, ConnectionWatch, ListenCounts
from streamd.endpoints import check_endpoint
from streamd.errors import ConfigError, StreamdError
from streamd.path_args import path_arg
from streamd.publisher import DEFAULT_ENDPOINT
from streamd.security import secure_client_socket
from streamd.sequence import GapCounter
from streamd.signals import stop_on_signals
from streamd.sinks import JsonLinesSink

HELP = "subscribe to a streamd publisher and print messages as JSON lines"
POLL_MS = 100
MAX_FRAMES = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--connect",
        default=DEFAULT_ENDPOINT,
        metavar="ENDPOINT",
        help=f"publisher (default {DEFAULT_ENDPOINT})",
    )
    parser.add_argument(
        "--topic",
        action="append",
        metavar="PREFIX",
        help="topic prefix, e.g. streamd.mic. or streamd.mic.event (repeatable; default: streamd)",
    )
    parser.add_argument("--count", type=int, metavar="N", help="stop after N messages")
    parser.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument(
        "--hwm",
        type=int,
        default=1000,
        metavar="N",
        help="messages this subscriber may hold unread before ZeroMQ drops (default 1000; gaps are reported)",
    )
    parser.add_argument("--dashboard", action="store_true", help="show the live dashboard, not JSON lines")
    auth = parser.add_argument_group("authentication (CURVE)")
    auth.add_argument(
        "--curve-server-key", type=path_arg, metavar="PUBFILE", help="the publisher's public key file"
    )
    auth.add_argument(
        "--curve-secret-key", type=path_arg, metavar="SECRETFILE", help="this client's secret key file"
    )


def _check_args(args: argparse.Namespace) -> None:
    if args.count is not None and args.count < 1:
        raise ConfigError(f"--count must be >= 1, got {args.count}")
    if not 1 <= args.hwm <= 10_000_000:
        raise ConfigError(f"--hwm must be between 1 and 10000000, got {args.hwm}")
    if args.seconds is not None and not (math.isfinite(args.seconds) and args.seconds > 0):
        raise ConfigError(f"--seconds must be a finite number > 0, got {args.seconds}")
    if (args.curve_server_key is None) != (args.curve_secret_key is None):
        raise ConfigError("--curve-server-key and --curve-secret-key go together")
    for prefix in args.topic or []:
        if not prefix or len(prefix.encode("utf-8")) > messages.MAX_TOPIC_BYTES:
            raise ConfigError(f"invalid --topic {prefix!r}")
    check_endpoint(args.connect, "connect to")
    if args.connect.startswith("inproc://"):
        raise ConfigError(f"--connect {args.connect}: inproc:// is within one process; use tcp:// or ipc://")
    if args.connect.startswith("tcp://") and not args.connect.rpartition(":")[2].isdigit():
        raise ConfigError(f"--connect {args.connect}: give the publisher's port (e.g. tcp://127.0.0.1:5556)")


def receive_frames(sock: zmq.Socket) -> list[bytes] | None:
    """One multipart message, or None if it has more than ``MAX_FRAMES`` frames (the rest is discarded)."""
    frames = [sock.recv(copy=True)]
    while sock.rcvmore:
        frame = sock.recv(copy=True)
        if len(frames) < MAX_FRAMES + 1:
            frames.append(frame)
    return frames if len(frames) <= MAX_FRAMES else None


def _subscriber(context: zmq.Context, args: argparse.Namespace) -> tuple[zmq.Socket, zmq.Socket]:
    """The connected SUB socket and its handshake-failure monitor (attached before connecting)."""
    sock = context.socket(zmq.SUB)
    sock.linger = 0
    sock.ipv6 = True  # lets tcp://[::1]:PORT connect; IPv4 endpoints work as before
    sock.maxmsgsize = MAX_FRAME_BYTES  # larger frames drop the connection; messages.decode bounds the rest
    sock.rcvhwm = args.hwm
    if args.curve_server_key is not None:
        secure_client_socket(sock, args.curve_server_key, args.curve_secret_key)
    for prefix in args.topic or [messages.TOPIC_ROOT]:
        sock.subscribe(prefix.encode("utf-8"))
    monitor = sock.get_monitor_socket(ConnectionWatch.EVENTS)
    try:
        sock.connect(args.connect)
    except zmq.ZMQError as exc:
        raise StreamdError(f"cannot connect to {args.connect}: {os.strerror(exc.errno)}") from None
    return sock, monitor


def listen(
    sock: zmq.Socket,
    monitor: zmq.Socket,
    sink: Callable[[dict[str, Any]], None],
    stop: threading.Event,
    args: argparse.Namespace,
    counts: ListenCounts,
) -> None:
    """Receive until stopped, ``--count`` or ``--seconds``, counting into ``counts``.

    A failed handshake with the publisher (rejected key, CURVE mismatch) raises StreamdError; one that
    fails without detail only when it keeps failing (``streamd.security.HandshakeWatch``): a publisher
    that restarts or goes away closes connections mid-handshake, and ZeroMQ reconnects.
    """
    watch = ConnectionWatch(sock, monitor, args)
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(monitor, zmq.POLLIN)
    while not stop.is_set():
        wait_ms = POLL_MS
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wait_ms = max(1, min(POLL_MS, int(remaining * 1000)))
        ready = dict(poller.poll(wait_ms))
        now = time.monotonic()
        if monitor in ready:
            watch.on_event(counts, now)
        watch.reopen_if_abandoned(now)
        watch.note_no_publisher(now)
        if sock not in ready:
            continue
        frames = receive_frames(sock)
        try:
            if frames is None:
                raise ValueError(f"more than {MAX_FRAMES} frames")
            msg = messages.decode(frames)
        except ValueError as exc:
            counts.malformed += 1
            if counts.malformed <= MAX_REPORTED_PROBLEMS:
                print(f"streamd listen: skipping a malformed message: {exc}", file=sys.stderr)
            continue
        sink(msg)
        counts.received += 1
        if args.count is not None and counts.received >= args.count:
            break


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    context = zmq.Context()
    stop = threading.Event()
    dashboard = None
    counts = ListenCounts()
    gaps = GapCounter(on_shared=None if args.dashboard else _warn_shared)
    try:
        sock, monitor = _subscriber(context, args)
        if args.dashboard:
            from streamd.dashboard_live import Dashboard

            dashboard = Dashboard()
            dashboard.start()
            sink: Callable[[dict[str, Any]], None] = dashboard.sink
        else:
            sink = _stopping_on_failure(JsonLinesSink(sys.stdout, raise_errors=True))
        if selects_types(args.topic or []):
            print(
                "streamd listen: --topic selects message types, so the messages left out are not gaps: "
                "losses are not counted",
                file=sys.stderr,
            )
        else:
            sink = _gap_counting(sink, gaps, report=not args.dashboard)
        with stop_on_signals(stop):
            listen(sock, monitor, sink, stop, args, counts)
    except BrokenPipeError:  # e.g. `streamd listen | head -1`: the reader is gone, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except _OutputFailed as exc:  # the listener's one job: it stops at once
        print(f"streamd listen: error: cannot write the messages: {exc}", file=sys.stderr)
        return 1
    finally:
        if dashboard is not None:
            dashboard.stop()
        context.destroy(linger=0)
    if dashboard is not None:  # not said over the dashboard while it ran
        for stream in gaps.shared:
            _warn_shared(stream)
    if dashboard is not None and dashboard.failure:
        print(
            f"streamd listen: error: the dashboard could not write its output: {dashboard.failure}",
            file=sys.stderr,
        )
        return 1
    short = args.count is not None and counts.received < args.count and not stop.is_set()  # timed out
    if not counts.received and not counts.malformed and not short:  # a stop with nothing on stdout says why
        print(f"streamd listen: no message received from {args.connect}", file=sys.stderr)
    if counts.malformed:
        print(f"streamd listen: skipped {counts.malformed} malformed message(s)", file=sys.stderr)
    if counts.disconnects:
        print(f"streamd listen: lost the connection {counts.disconnects} time(s)", file=sys.stderr)
    if summary := loss_summary(gaps):
        print(f"streamd listen: {summary}", file=sys.stderr)
    if short:
        said = f"only {counts.received} of {args.count} message(s) from {args.connect}"
        print(f"streamd listen: error: {said}", file=sys.stderr)
    return 1 if short else 0


def loss_summary(gaps: GapCounter) -> str | None:
    """The total of messages missed at exit (None when nothing was): the streams two publishers share are
    named, counted only until that was known, without the jump the second publisher's first message made
    (its line was printed)."""
    if not gaps.missed and not gaps.withdrawn:
        return None
    summary = f"missed {gaps.missed} message(s) in {gaps.gaps} gap(s)"
    if gaps.shared:
        names = ", ".join(gaps.shared)
        summary += f", stream(s) {names} counted only until two publishers were found to share the name"
        if gaps.withdrawn:
            summary += f" ({gaps.withdrawn} gap(s) printed there were a second publisher's numbers)"
    return summary


def selects_types(prefixes: list[str]) -> bool:
    """Whether a topic prefix keeps some message types of a stream and not others (``streamd.mic.event``,
    ``streamd.mic.p``): ``seq`` numbers all of a stream's messages, so those left out would look lost."""
    return any(len(parts := prefix.split(".", 2)) == 3 and parts[2] for prefix in prefixes)


def _warn_shared(stream: str) -> None:
    """Say once that ``stream``'s ``seq`` goes back and forth (``GapCounter.shared``)."""
    print(
        f"streamd listen: warning: the seq of stream {stream} goes back and forth: two publishers seem "
        "to share the stream name (give each daemon its own --stream-prefix or source name); its losses "
        "cannot be counted",
        file=sys.stderr,
        flush=True,
    )


def _gap_counting(
    sink: Callable[[dict[str, Any]], None], gaps: GapCounter, *, report: bool
) -> Callable[[dict[str, Any]], None]:
    """``sink`` behind a ``GapCounter``; with ``report`` every gap is one stderr line before the message."""

    def counted(msg: dict[str, Any]) -> None:
        gap = gaps.observe(msg)
        if gap is not None and report:
            print(f"streamd listen: {gap.describe()}", file=sys.stderr, flush=True)
        sink(msg)

    return counted


class _OutputFailed(Exception):
    """Standard output could not take a message (a full disk, a closed descriptor)."""


def _stopping_on_failure(sink: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """``sink`` whose write failures (other than a reader gone: that ends quietly) are ``_OutputFailed``."""

    def write(msg: dict[str, Any]) -> None:
        try:
            sink(msg)
        except BrokenPipeError:
            raise
        except (OSError, ValueError, AttributeError) as exc:
            raise _OutputFailed(getattr(exc, "strerror", None) or "the output is closed") from None

    return write
