"""Live capture from a PortAudio input device: the callback only copies into the ring.

The device is chosen by ``streamd.input_devices``; after an error or a stall the supervisor calls
``restart``, and the outage is reported as a gap (``take_gaps``).
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from typing import Any

import numpy as np

from streamd.errors import AudioInputError
from streamd.input_devices import resolve_input_device, sounddevice_module
from streamd.ring import SampleRing
from streamd.sources import Source

MAX_DEVICE_CHANNELS = 2  # capture at most this many channels; they are averaged anyway
MIN_GAP_S = 0.1  # after a reopen, audio this much later than the clock says is a gap (an outage)


class DeviceSource(Source):
    """Live capture from a PortAudio input device at its native rate (up to two channels)."""

    live = True

    def __init__(
        self,
        device: str | int = "mic",
        *,
        block_s: float = 0.02,
        ring_s: float = 10.0,
        name: str | None = None,
    ) -> None:
        self.device = resolve_input_device(device)
        self.name = name or ("mic" if str(device).lower() in ("mic", "default") else self.device.name)
        self.sample_rate = round(self.device.default_samplerate)
        self.channels = min(self.device.channels, MAX_DEVICE_CHANNELS)
        self.block = max(1, round(block_s * self.sample_rate))
        self.ring = SampleRing(round(ring_s * self.sample_rate), self.channels)
        self._stream: Any = None
        self._stopping = False
        self.callbacks = 0
        self.restarts = 0
        self.device_overflows = 0
        self._last_block_at: float | None = None  # monotonic time of the last block's arrival
        self._reopened = False  # the next block is the first after a reopen
        self._gaps: deque[tuple[int, int]] = deque()

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # Runs in PortAudio's thread: copy into the ring (and note an outage's length) and nothing else.
        now = time.monotonic()
        if status.input_overflow:
            self.device_overflows += 1
        if self._reopened:
            self._reopened = False
            self._note_gap(now, frames)
        self.ring.write(indata, now)
        self._last_block_at = now
        self.callbacks += 1

    def _note_gap(self, now: float, frames: int) -> None:
        """The first block after a reopen arrived ``late_s`` after the last block's audio would have been
        followed by it: that much audio was never captured (the device was gone or silent)."""
        if self._last_block_at is None:
            return
        late_s = now - self._last_block_at - frames / self.sample_rate
        if late_s >= MIN_GAP_S:
            self._gaps.append((self.ring.write_index, round(late_s * self.sample_rate)))

    def take_gaps(self) -> list[tuple[int, int]]:
        out = []
        while self._gaps:
            out.append(self._gaps.popleft())
        return out

    def _finished(self) -> None:
        if not self._stopping:
            self.error = f"input device {self.device.name!r} stopped unexpectedly"

    def start(self) -> None:
        sd = sounddevice_module()
        self._stopping = False
        try:
            self._stream = sd.InputStream(
                device=self.device.index,
                samplerate=self.sample_rate,
                channels=self.channels,
                dtype="float32",
                blocksize=self.block,
                callback=self._callback,
                finished_callback=self._finished,
            )
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            self._stream = None
            raise AudioInputError(f"cannot open input device {self.device.name!r}: {exc}") from None
        self.error = None

    def stop(self) -> None:
        """Abort (never waits for pending buffers: a stalled device must not hang us) and close."""
        self._drop_stream()
        self.ring.close()

    def _drop_stream(self) -> None:
        """Abort and close the PortAudio stream, if open; errors of a device already gone are ignored."""
        self._stopping = True
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.abort()
            with contextlib.suppress(Exception):
                stream.close()

    def restart(self) -> None:
        """Reopen the device after an error or a stall; the sample index (stream time) continues."""
        self._drop_stream()
        self.restarts += 1
        self._reopened = True
        try:
            self.start()
        except AudioInputError as exc:
            self.error = str(exc)
