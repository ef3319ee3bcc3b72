"""The one ``open`` of an audio input: a regular file, a FIFO, a pipe or standard input (``-``).

An input is opened without blocking on a FIFO that has no writer yet; a non-seekable one must then deliver
its first bytes within ``wait_s`` seconds (``wait_readable``), after which its reads block. Every failure
is an ``AudioInputError`` naming the input, as ``audio_core.audio_file`` shows it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import stat
from pathlib import Path

from audio_core.errors import AudioInputError

STDIN = "-"


def open_fd(path: Path, name: str) -> int:
    """One ``open`` of ``path`` (or a duplicate of standard input for ``-``), without blocking on a FIFO;
    ``name``: how messages show it."""
    if str(path) == STDIN:
        return os.dup(0)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise AudioInputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise AudioInputError(f"{name}: is a directory, not an audio file") from None
    except PermissionError:
        raise AudioInputError(f"{name}: permission denied") from None
    except OSError as exc:
        raise AudioInputError(f"{name}: cannot open ({exc.strerror})") from None
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise AudioInputError(f"{name}: is a directory, not an audio file")
    return fd


def wait_readable(fd: int, name: str, wait_s: float) -> None:
    """Wait until a non-seekable input has bytes (or its writer closed); then make reads blocking."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    ready = poller.poll(max(0.0, wait_s) * 1000.0)
    if not ready:
        raise AudioInputError(f"{name}: no data arrived within {wait_s:g} s (is anything writing to it?)")
    if not ready[0][1] & select.POLLIN:  # the writer closed it without writing anything
        raise AudioInputError(f"{name}: empty input (no bytes before the writer closed it)")
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)


def close_quietly(fd: int) -> None:
    """Close ``fd``, which libsndfile may have closed already."""
    with contextlib.suppress(OSError):
        os.close(fd)


def more_follows(fd: int, wait_s: float) -> bool:
    """Whether a non-seekable input still holds bytes (one is read: for an input about to be refused)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    if not poller.poll(max(0.0, wait_s) * 1000.0):
        return False
    try:
        return bool(os.read(fd, 1))
    except OSError:
        return False
