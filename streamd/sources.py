"""The source interface: what the daemon needs from an audio input (a name, a native rate, a ring,
start/stop/join, restart and outages).

A source fills its ``SampleRing`` at its native rate and channel count; everything after the ring
(downmix, resampling, features) is the same for every source. The sources themselves live in their own
modules: ``streamd.file_source`` (a file replayed through the same ring), ``streamd.device_source`` (a
live PortAudio input) and ``streamd.network_source`` (audio sent over the network).
"""

from __future__ import annotations

from streamd.ring import SampleRing


class Source:
    """What the daemon needs from a source: a name, a native rate, a ring, start/stop."""

    name: str
    sample_rate: int
    channels: int
    ring: SampleRing
    live: bool = False
    pipe: bool = False  # a non-seekable input: the watchdog reports a stalled writer
    error: str | None = None  # set when the source failed (file read error, device gone)
    device_overflows = 0  # input overflows the device itself reported
    restarts = 0
    decode_errors = 0  # packets of a network stream that could not be decoded (skipped)
    filled_samples = 0  # a network stream's short losses (packets lost in transit) filled with silence

    @property
    def paced(self) -> bool:
        """Audio arrives at the pace of a clock (a device, a network stream, a paced replay): the daemon
        may stagger such streams' windows (``[windows] stagger``)."""
        return self.live

    def known_failure(self) -> str | None:
        """How the run will fail, when that is known before it starts (``--check`` says it), or None."""
        return None

    def start(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` for the source's reader thread (``_thread``), if it has one."""
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    @property
    def delivered(self) -> int:
        """Samples the input has delivered so far, the ones not yet in the ring included (the watchdog's
        sign of life)."""
        return self.ring.write_index

    def restart(self) -> None:
        """Reopen a live input after an error or a stall (files do not restart)."""

    def take_gaps(self) -> list[tuple[int, int]]:
        """Outages seen since the last call: ``(ring index where audio resumed, native samples lost)``."""
        return []
