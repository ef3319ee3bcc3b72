"""Message sinks that run in the publisher thread: the JSON-lines printer behind ``--json``."""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO


def silence_stream(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at the null device, so that no later write or flush (at exit
    too) fails because the reader of a pipe has gone; streams without a descriptor are left alone."""
    with contextlib.suppress(io.UnsupportedOperation, AttributeError, ValueError):
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)


def reader_gone(stream: TextIO) -> bool:
    """Whether the reader of ``stream`` has gone (then the stream is silenced): a flush fails with a
    broken pipe, its pipe reports an error (no reader), or ``silence_stream`` already pointed it at the
    null device."""
    try:
        stream.flush()
    except BrokenPipeError:
        silence_stream(stream)
        return True
    with contextlib.suppress(io.UnsupportedOperation, AttributeError, ValueError, OSError):
        fd = stream.fileno()
        if os.path.samestat(os.fstat(fd), os.stat(os.devnull)):
            return True
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if any(events & select.POLLERR for _, events in poller.poll(0)):
            silence_stream(stream)
            return True
    return False


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (False for None, a closed stream or one without ``isatty``)."""
    try:
        return stream is not None and bool(stream.isatty())
    except (OSError, ValueError, AttributeError):
        return False


def write_line(stream: TextIO, line: str) -> None:
    """Write ``line`` and a newline, then flush, so pipes see it at once: the one rule of every command
    printing lines to a pipe. When the reader has gone (``... | head -1``) the stream is silenced
    (``silence_stream``) and ``BrokenPipeError`` raised: the caller stops writing and exits quietly."""
    try:
        stream.write(line + "\n")
        stream.flush()
    except BrokenPipeError:
        silence_stream(stream)
        raise


class JsonLinesSink:
    """Writes every message as one JSON line (ASCII-safe) and flushes, so pipes see it at once.

    When the reader goes away (``streamd replay --json | head -1``) the first failed write silences the
    stream, calls ``on_reader_gone`` (the daemon's commands stop the run, as a pipe's reader expects) and
    raises ``BrokenPipeError`` once (the publisher then drops the sink); later calls do nothing.
    Any other failure (a full disk, a closed standard output) is kept in ``failure`` and the lines from
    then on are counted in ``unwritten``, for the command to report; the daemon goes on. With
    ``raise_errors`` the failure is raised instead (the proxy's capture handles it itself).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        raise_errors: bool = False,
        on_reader_gone: Callable[[], None] | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.raise_errors = raise_errors  # a failed write raises (a caller that handles it: the proxy)
        self.on_reader_gone = on_reader_gone
        self._lock = threading.Lock()
        self.reader_gone = False
        self.failure: str | None = None  # why writing failed (then every later line is counted, not written)
        self.unwritten = 0  # lines lost to that failure

    def __call__(self, msg: dict[str, Any]) -> None:
        self._write(json.dumps(msg, allow_nan=False, separators=(",", ":")))

    def write_encoded(self, msg: dict[str, Any], body: bytes) -> None:
        """``self(msg)`` for a message the publisher has already encoded (``messages.encode``: the same
        JSON with the same separators, not ASCII-escaped): an ASCII body is that very line, written as it
        is without encoding the message a second time; any other is encoded ASCII-safe."""
        if body.isascii():
            self._write(body.decode("ascii"))
        else:
            self(msg)

    def _write(self, line: str) -> None:
        with self._lock:
            if self.reader_gone:
                return
            if self.failure is not None:
                self.unwritten += 1
                return
            try:
                write_line(self.stream, line)
            except BrokenPipeError:
                self.reader_gone = True
                if self.on_reader_gone is not None:
                    self.on_reader_gone()
                raise
            except (OSError, ValueError, AttributeError) as exc:  # a full disk, a closed or absent stdout
                if self.raise_errors:
                    raise
                closed = self.stream is None or isinstance(exc, ValueError)
                self.failure = "the output is closed" if closed else exc.strerror or str(exc)
                self.unwritten += 1
                if self.stream is not None:
                    silence_stream(self.stream)  # what stays buffered must not fail again at exit
