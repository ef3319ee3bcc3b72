"""Watching a non-seekable input (a FIFO or pipe) for a writer that stopped writing.

A pipe cannot be reopened like a device, so a stall is only reported: once per stall, after
``watchdog_s`` seconds without a sample, as a ``stalled`` status naming the input. It clears as soon as
samples flow again (or the writer closes the pipe, which ends the stream normally).
"""

from __future__ import annotations

from typing import Any


def pipe_stall(stream: Any, now: float, watchdog_s: float) -> str | None:
    """The message of a newly detected stall of ``stream``'s pipe input, else None (state on ``stream``)."""
    ring = stream.source.ring
    written = ring.write_index
    if written != stream.last_write[0] or ring.closed:
        stream.last_write = (written, now)
        stream.alarm = None
        return None
    quiet = now - stream.last_write[1]
    if stream.alarm is None and quiet >= watchdog_s:
        stream.alarm = "stalled"
        name = getattr(stream.source, "display", stream.name)
        return f"no audio from {name} for {quiet:.1f} s (the writer stalled; waiting for it)"
    return None
