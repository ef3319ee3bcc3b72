"""SIGINT, SIGTERM and SIGHUP as a stop event: the one way every long-running command is stopped (a
daemon started from a terminal that closes gets SIGHUP: it stops as cleanly as on Ctrl-C, its final
status said, instead of dying at once; under ``nohup``, which ignores SIGHUP, it is left ignored).
Outside a daemon's run loop (``train``, ``classify``, a daemon's start-up and shut-down) every command stops
by unwinding instead: there SIGTERM and SIGHUP are Ctrl-C (``stop_signals_as_ctrl_c``, for the whole
command line: ``streamd.cli``).

The Python-level handler does nothing: the signal number reaches a watcher thread through the
interpreter's wakeup file descriptor (``signal.set_wakeup_fd``), and that thread sets the event. Setting
it from the handler itself could deadlock: the handler runs on the main thread between two bytecodes,
possibly while that thread is inside ``stop.wait()`` holding the event's internal lock.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP set ``stop`` while inside the block (off the main thread: nothing is
    installed)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    watcher = threading.Thread(target=_watch, args=(reader, stop), name="streamd-signals", daemon=True)
    watcher.start()
    previous_fd: int | None = None
    previous: dict[signal.Signals, object] = {}
    try:  # every step taken is undone, even when a signal's old handler raises in between
        previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        for sig in STOP_SIGNALS:
            if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                continue  # ``nohup streamd run``: the user asked to outlive the terminal
            previous[sig] = signal.signal(sig, _noted_by_the_watcher)
        yield
    finally:
        try:
            for sig, handler in previous.items():
                signal.signal(sig, handler)  # type: ignore[arg-type]
        finally:
            if previous_fd is not None:
                signal.set_wakeup_fd(previous_fd)
            writer.close()  # the watcher reads the end of the stream and returns
            watcher.join(1.0)
            reader.close()


@contextlib.contextmanager
def stop_signals_as_ctrl_c() -> Iterator[None]:
    """SIGTERM and SIGHUP act as Ctrl-C inside the block: whatever SIGINT's handler is when they come
    (``KeyboardInterrupt``, or only recorded while a module imports: ``held_interrupts``), so a command
    that stops by unwinding (``train``; any command before a daemon's run loop) ends as on Ctrl-C instead
    of dying at once. SIGINT ignored (a background job): ``KeyboardInterrupt`` all the same. SIGHUP left
    ignored under ``nohup``; off the main thread nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[signal.Signals, object] = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                continue  # ``nohup streamd train``: the user asked to outlive the terminal
            previous[sig] = signal.signal(sig, _as_ctrl_c)
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def _as_ctrl_c(signum: int, frame: object) -> None:
    """SIGTERM / SIGHUP handed to SIGINT's handler of the moment."""
    handler = signal.getsignal(signal.SIGINT)
    if not callable(handler):  # ignored (a background job) or not Python's: stop all the same
        handler = signal.default_int_handler
    handler(signum, frame)


def _noted_by_the_watcher(signum: int, frame: object) -> None:
    """The Python-level handler: nothing to do here (see the module doc)."""


def _watch(reader: socket.socket, stop: threading.Event) -> None:
    """Watcher thread: each byte read is a signal number; a stop signal sets ``stop``."""
    while data := reader.recv(64):
        if any(byte in STOP_SIGNALS for byte in data):
            stop.set()
