"""Fan-in: ZeroMQ's own XSUB/XPUB proxy (``zmq.proxy_steerable``) between many daemons and their subscribers.

    daemons (PUB, connect) -> frontend (XSUB, bind) ==zmq proxy== backend (XPUB, bind) <- subscribers (SUB)

Messages flow frontend -> backend and subscriptions backend -> frontend, so a daemon waiting for a
subscriber (``--wait-subscriber``) sees one through the proxy. CURVE, when configured, guards both sides
with one server key and one directory of allowed client keys (daemons and subscribers alike), checked by
one ZAP authenticator (``streamd.security``). The optional capture appends every message the daemons send
to a file, as the JSON line of its body (what ``streamd listen`` prints), from a thread of its own (the
proxy subscribes to everything for it, so a daemon waiting for a subscriber counts the capture as one); a
write error (a full disk) stops the capture, never the forwarding, and what it could not write is counted;
the file is cut back to the end of the last whole line written (no torn line is left behind).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path
from typing import TextIO

import zmq

from streamd import messages
from streamd.endpoints import PublishError, check_endpoint
from streamd.errors import StreamdError
from streamd.security import (
    Security,
    apply_server_keys,
    check_bind_allowed,
    check_curve_config,
    secure_server_socket,
)
from streamd.sinks import JsonLinesSink

SNDHWM = 100000  # messages per subscriber the backend holds before it drops for a slow one
CONTROL = "inproc://streamd-proxy-control"
CAPTURE = "inproc://streamd-proxy-capture"
POLL_MS = 100

log = logging.getLogger(__name__)


class Proxy:
    """Binds ``frontend`` (daemons connect) and ``backend`` (subscribers connect); forwards between them."""

    def __init__(
        self, frontend: str, backend: str, *, security: Security | None = None, capture: Path | None = None
    ) -> None:
        self.frontend, self.backend = frontend, backend
        self.security = security or Security()
        self.capture = capture
        self.captured = 0
        self.malformed = 0
        self.not_captured = 0  # messages that passed after the capture failed
        self.capture_error: str | None = None
        self.capture_trimmed = False  # a write error's partial line was cut off the capture file
        self._capture_end: int | None = None  # where the last whole line written ends (a regular file)
        self._threads: list[threading.Thread] = []
        self._context: zmq.Context | None = None
        self._auth = None
        self._capture_file: TextIO | None = None
        self._capture_stop = threading.Event()
        self._steer: zmq.Socket | None = None
        self.endpoints: tuple[str, str] = (frontend, backend)

    def start(self) -> None:
        """Bind both sides (errors raise here, one line each) and start forwarding in a thread."""
        for endpoint in (self.frontend, self.backend):
            check_endpoint(endpoint)
            check_bind_allowed(endpoint, self.security)
        check_curve_config(self.security)
        self._context = context = zmq.Context()
        xsub, xpub = context.socket(zmq.XSUB), context.socket(zmq.XPUB)
        control = context.socket(zmq.PAIR)
        capture = context.socket(zmq.PUSH) if self.capture else None
        try:
            if capture is not None:
                capture.sndhwm = SNDHWM  # the proxy waits, rather than drop, when the writer falls behind
            xpub.sndhwm = SNDHWM
            self._auth = secure_server_socket(context, xsub, self.security)
            if self._auth is not None:
                apply_server_keys(xpub, self.security)
            self._bind(xsub, self.frontend)
            self._bind(xpub, self.backend)
            control.bind(CONTROL)
            self._steer = context.socket(zmq.PAIR)
            self._steer.connect(CONTROL)
            if capture is not None:
                capture.bind(CAPTURE)
                self._start_capture(context)
                # the capture is the full record whoever listens: the proxy subscribes to everything
                # itself (XSUB counts subscriptions, so a subscriber's leaving does not end this one)
                xsub.send(b"\x01")
        except BaseException:
            for sock in (xsub, xpub, control, capture, self._steer):
                if sock is not None:
                    sock.close(linger=0)
            self._steer = None
            self._close()
            raise
        self.endpoints = (xsub.last_endpoint.decode(), xpub.last_endpoint.decode())
        thread = threading.Thread(target=self._forward, args=(xsub, xpub, control, capture), daemon=True)
        thread.start()
        self._threads.append(thread)

    @staticmethod
    def _bind(sock: zmq.Socket, endpoint: str) -> None:
        sock.ipv6 = "://[" in endpoint
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise PublishError(f"cannot bind {endpoint}: {exc.strerror}") from None

    def _forward(
        self, xsub: zmq.Socket, xpub: zmq.Socket, control: zmq.Socket, capture: zmq.Socket | None
    ) -> None:
        try:
            zmq.proxy_steerable(xsub, xpub, capture, control)
        except zmq.ContextTerminated:
            pass
        except zmq.ZMQError as exc:
            log.error("the proxy stopped: %s", exc)
        finally:
            for sock in (xsub, xpub, control, capture):
                if sock is not None:
                    sock.close(linger=0)

    def _start_capture(self, context: zmq.Context) -> None:
        assert self.capture is not None
        try:
            self._capture_file = self.capture.open("a", encoding="utf-8")
            self._capture_end = _regular_size(self._capture_file.fileno())  # before any line of this run
            if _ends_mid_line(self.capture):  # an earlier run stopped mid-write (a full disk)
                self._capture_file.write("\n")
        except OSError as exc:
            raise StreamdError(f"cannot write the capture file {self.capture}: {exc.strerror}") from None
        pull = context.socket(zmq.PULL)
        pull.connect(CAPTURE)
        sink = JsonLinesSink(self._capture_file, raise_errors=True)  # a failed write stops the capture
        thread = threading.Thread(target=self._record, args=(pull, sink), daemon=True)
        thread.start()
        self._threads.append(thread)

    def _record(self, pull: zmq.Socket, sink: JsonLinesSink) -> None:
        """Write captured messages; subscription frames (one frame, 0/1 first byte) are not messages."""
        try:
            while not self._capture_stop.is_set() or pull.poll(0):
                if not pull.poll(POLL_MS):
                    continue
                frames = pull.recv_multipart()
                if len(frames) == 1 and frames[0][:1] in (b"\x00", b"\x01"):
                    continue
                try:
                    msg = messages.decode(frames)
                except ValueError:
                    self.malformed += 1
                    continue
                if self.capture_error is not None:
                    self.not_captured += 1
                    continue
                try:
                    sink(msg)
                except OSError as exc:
                    self._capture_failed(exc)
                    self.not_captured += 1
                    continue
                self.captured += 1
                if self._capture_end is not None and self._capture_file is not None:
                    self._capture_end = _regular_size(self._capture_file.fileno())
        finally:
            pull.close(linger=0)

    def _capture_failed(self, exc: OSError) -> None:
        """Stop capturing (forwarding goes on; the capture thread keeps draining and counting)."""
        self.capture_error = exc.strerror or str(exc)
        log.error(
            "cannot write the capture file %s: %s; capturing stopped, forwarding goes on",
            self.capture,
            self.capture_error,
        )
        self._close_capture_file()

    def _close_capture_file(self) -> None:
        """Close the capture file; after a write error, cut it back to the end of its last whole line."""
        file, self._capture_file = self._capture_file, None
        if file is None:
            return
        fd = os.dup(file.fileno()) if self._capture_end is not None else None
        try:
            file.close()  # its last flush may write more of the failed line
        except OSError as exc:  # what was buffered could not be flushed
            if self.capture_error is None:
                self.capture_error = exc.strerror or str(exc)
        if fd is None:
            return
        try:
            if self.capture_error is not None and os.fstat(fd).st_size > (end := self._capture_end or 0):
                os.ftruncate(fd, end)
                self.capture_trimmed = True
        except OSError as exc:  # the torn line stays; a restarted proxy starts a new line after it
            log.warning("cannot cut the partial last line off %s: %s", self.capture, exc.strerror or exc)
        finally:
            os.close(fd)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop forwarding, write what was captured, close everything."""
        steer, self._steer = self._steer, None
        if steer is not None:
            steer.send(b"TERMINATE")
        self._capture_stop.set()
        for thread in self._threads:
            thread.join(timeout)
        if steer is not None:
            steer.close(linger=0)
        self._close()

    def _close(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._context is not None:
            self._context.term()
            self._context = None
        self._close_capture_file()


def _regular_size(fd: int) -> int | None:
    """The size of the regular file open at ``fd``; None for anything else (a pipe, a device)."""
    info = os.fstat(fd)
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _ends_mid_line(path: Path) -> bool:
    """Whether ``path`` is a non-empty file whose last byte is not a newline."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            if f.tell() == 0:
                return False
            f.seek(-1, 2)
            return f.read(1) != b"\n"
    except OSError:  # not seekable (a pipe, a device): nothing to mend
        return False
