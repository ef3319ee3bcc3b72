"""Live capture from a PortAudio input device: the callback only copies into the ring.

The device is chosen by ``streamd.input_devices``; after an error or a stall the supervisor calls
``restart``, and the outage is reported as a gap (``take_gaps``). Audio the device dropped while this
process was not reading (paused longer than the device's buffer) is measured and reported the same way.
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
SETTLE_S = 0.2  # after a reopen, audio arriving at its own pace this long ends the estimate of the gap
MAX_SETTLE_S = 2.0  # ... and no more audio than this beyond the time away is held back for it
MIN_IMPROVEMENT_S = 0.002  # a block that lowers the estimate by less than this is arrival jitter
# a block this long after the previous one (our process paused, a suspended VM): measure, as after a
# reopen, whether audio was lost meanwhile (the device's buffer overran without a word)
LATE_BLOCK_S = 0.5
MAX_HELD_S = 60.0  # held blocks waiting for room in the ring: beyond this much audio the reader has
# stalled, and they go in regardless (the ring counts the overrun)


class OutageEstimate:
    """How much audio a reopened device never delivered, from the arrival times of its first blocks.

    Each block after the reopen bounds the gap from above: ``arrival - last_arrival - audio_so_far``
    (the audio it ends could not have been captured later than it arrived). The first block alone
    overshoots when the device hands over a backlog in a burst (PulseAudio does: half a second of audio
    in one go after a reopen, many seconds after our process was paused); the smallest bound, once blocks
    arrive at their own pace for ``SETTLE_S``, does not. A burst that never ends is cut off once it has
    delivered the time away plus ``MAX_SETTLE_S`` of audio: more than a backlog can hold.
    Pure: the caller passes arrival times.
    """

    def __init__(self, last_arrival: float, sample_rate: int) -> None:
        self.last_arrival = last_arrival
        self.sample_rate = sample_rate
        self.audio_s = 0.0  # audio delivered since the reopen
        self.best_s = float("inf")  # the smallest bound so far
        self._lowered_at_s = 0.0  # ``audio_s`` when ``best_s`` last fell by more than jitter
        self._limit_s: float | None = None  # audio held back at most: set by the first block

    def add(self, arrival: float, frames: int) -> bool:
        """Account one block; True once the estimate is settled (``lost_s``)."""
        if self._limit_s is None:  # a backlog holds no more than the time away and what was buffered
            self._limit_s = max(0.0, arrival - self.last_arrival) + MAX_SETTLE_S
        self.audio_s += frames / self.sample_rate
        bound = arrival - self.last_arrival - self.audio_s
        if bound < self.best_s - MIN_IMPROVEMENT_S:
            self._lowered_at_s = self.audio_s
        self.best_s = min(self.best_s, bound)
        return self.audio_s - self._lowered_at_s >= SETTLE_S or self.audio_s >= self._limit_s

    @property
    def lost_s(self) -> float:
        """The estimated lost audio in seconds (0 when the blocks came in time)."""
        return max(0.0, self.best_s)


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
        # at least two device blocks: a ring smaller than one lost part of every block
        self.ring = SampleRing(max(round(ring_s * self.sample_rate), 2 * self.block), self.channels)
        self._stream: Any = None
        self._stopping = False
        self.callbacks = 0
        self.restarts = 0
        self.device_overflows = 0
        self._last_block_at: float | None = None  # monotonic time of the last block's arrival
        self._reopened = False  # the next block is the first after a reopen
        self._settling: OutageEstimate | None = None  # after a reopen, until the gap is known
        self._held: deque[tuple[np.ndarray, float]] = deque()  # blocks held back, with arrival times
        self._held_frames = 0
        self._max_held = round(MAX_HELD_S * self.sample_rate)
        self._gap_at = 0  # ``delivered`` where the audio being measured resumed
        self._ahead_of_gap = 0  # held blocks that came before it
        self._gaps: deque[tuple[int, int]] = deque()
        self.clock = time.monotonic  # arrival times of blocks (a test may drive its own)

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # Runs in PortAudio's thread: copy into the ring (after a reopen or a late block, first measure
        # the audio that never came; blocks held back meanwhile go on as the ring has room for them).
        now = self.clock()
        if status.input_overflow:
            self.device_overflows += 1
        self.callbacks += 1
        last = self._last_block_at
        late = last is not None and now - last >= LATE_BLOCK_S
        if (self._reopened or late) and self._settling is None and last is not None:
            self._settling = OutageEstimate(last, self.sample_rate)
            self._gap_at, self._ahead_of_gap = self.delivered, len(self._held)
        self._reopened = False
        self._last_block_at = now
        if self._settling is None and not self._held:
            self.ring.write(indata, now)
            return
        self._held.append((indata.copy(), now))
        self._held_frames += frames
        if self._settling is not None and self._settling.add(now, frames):
            self._note_gap()
        self._pass_held()

    @property
    def delivered(self) -> int:
        return self.ring.write_index + self._held_frames

    def _note_gap(self) -> None:
        """The outage is measured: note it as a gap where the audio resumed (when long enough)."""
        estimate, self._settling = self._settling, None
        if estimate is not None and estimate.lost_s >= MIN_GAP_S:
            self._gaps.append((self._gap_at, round(estimate.lost_s * self.sample_rate)))

    def _pass_held(self, everything: bool = False) -> None:
        """Write held blocks into the ring, oldest first, while it has room for them (all when
        ``everything``, or beyond ``MAX_HELD_S`` of audio: then the ring counts the overrun);
        while an outage is being measured, only the blocks that came before it."""
        while self._held:
            if self._settling is not None and self._ahead_of_gap == 0:
                return
            block, arrival = self._held[0]
            room = block.shape[0] <= self.ring.free() or self._held_frames > self._max_held
            if not (room or everything):
                return
            self._held.popleft()
            self._held_frames -= block.shape[0]
            self._ahead_of_gap -= 1
            self.ring.write(block, arrival)

    def _release_held(self) -> None:
        """The stream stops or reopens: note the outage measured so far, pass every held block on."""
        self._note_gap()
        self._pass_held(everything=True)

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
        self._release_held()
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
        self._release_held()  # a reopen that failed again while its gap was being measured
        self.restarts += 1
        self._reopened = True
        try:
            self.start()
        except AudioInputError as exc:
            self.error = str(exc)
