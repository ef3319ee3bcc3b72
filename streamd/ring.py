"""Single-producer, single-consumer ring of audio samples keyed by absolute sample index.

The producer (a capture callback or a file reader) only copies into preallocated memory and never waits:
when it writes over samples the consumer has not read yet, that is an overrun, counted here. The consumer
reads from its own position; samples that were overwritten before it got to them come back as zeros so
that sample index and stream time stay the same thing. Each write also logs (end index, time written), so
the consumer can ask when any recent sample became available (for latency).

Pure module: no threads, locks or devices. It is safe for one writer and one reader thread under the GIL:
the writer publishes ``write_index`` only after the data is in place, and the reader re-checks it after
copying to detect a write that overtook the copy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class RingRead:
    """Samples ``[start, start + len(data))``; the first ``lost`` were overwritten and read as zeros."""

    start: int
    data: np.ndarray  # (n, channels) float32
    lost: int


class SampleRing:
    """``capacity`` frames of ``channels`` float32 samples, addressed by absolute sample index."""

    def __init__(
        self,
        capacity: int,
        channels: int = 1,
        *,
        log_size: int = 4096,
        on_write: Callable[[], None] | None = None,
        on_read: Callable[[], None] | None = None,
    ) -> None:
        if capacity <= 0 or channels <= 0:
            raise ValueError("capacity and channels must be positive")
        self.capacity = int(capacity)
        self.channels = int(channels)
        self._buf = np.zeros((self.capacity, self.channels), dtype=np.float32)
        self._log_start = np.zeros(log_size, dtype=np.int64)
        self._log_end = np.zeros(log_size, dtype=np.int64)
        self._log_time = np.zeros(log_size, dtype=np.float64)
        self._log_count = 0
        self.on_write = on_write  # called after every write and on close (e.g. to wake the consumer)
        self.on_read = on_read  # called after every read (e.g. to wake a producer waiting for space)
        self.write_index = 0  # samples written so far (absolute index of the next sample)
        self._claimed = 0  # end of the region the writer is filling (announced before the copy)
        self.read_index = 0  # samples consumed so far
        self.overruns = 0  # writes that overwrote unread samples
        self.lost_samples = 0  # samples the reader never saw
        self.closed = False  # the producer will write no more
        self.empty_reads = 0  # reads that found nothing: the consumer is waiting for samples

    # -- producer side ---------------------------------------------------------------------------------

    def write(self, block: np.ndarray, now: float | None = None) -> None:
        """Copy ``block`` ``(n, channels)`` (or ``(n,)`` when mono) in; never waits, never allocates."""
        n = block.shape[0]
        if n == 0:
            return
        if n > self.capacity:  # only the newest ``capacity`` samples can be kept
            skipped = n - self.capacity
            self.write_index += skipped
            block = block[skipped:]
            n = self.capacity
        data = block.reshape(n, -1) if block.ndim == 1 else block
        start = self.write_index
        self._claimed = start + n  # announce before touching the buffer
        pos = start % self.capacity
        first = min(n, self.capacity - pos)
        self._buf[pos : pos + first] = data[:first]
        if first < n:
            self._buf[: n - first] = data[first:]
        if start + n - self.read_index > self.capacity:
            self.overruns += 1
        slot = self._log_count % self._log_end.size
        self._log_start[slot] = start
        self._log_end[slot] = start + n
        self._log_time[slot] = time.monotonic() if now is None else now
        self._log_count += 1
        self.write_index = start + n  # publish only after the data is in place
        if self.on_write is not None:
            self.on_write()

    def free(self) -> int:
        """Samples that can be written without overwriting unread ones."""
        return self.capacity - (self.write_index - self.read_index)

    def close(self) -> None:
        """Mark the end of the stream (the producer writes nothing more)."""
        self.closed = True
        if self.on_write is not None:
            self.on_write()

    # -- consumer side ---------------------------------------------------------------------------------

    def available(self) -> int:
        """Samples written but not yet read (including any that were overwritten)."""
        return self.write_index - self.read_index

    def exhausted(self) -> bool:
        """True once the producer closed the ring and everything written was read."""
        return self.closed and self.available() == 0

    def read(self, max_samples: int | None = None) -> RingRead:
        """Consume up to ``max_samples`` samples from the read position (all available when None)."""
        start = self.read_index
        end = self.write_index
        if max_samples is not None:
            end = min(end, start + max_samples)
        n = end - start
        out = np.zeros((n, self.channels), dtype=np.float32)
        oldest = end - self.capacity
        lost = max(0, oldest - start)
        copy_from = start + lost
        self._copy(copy_from, end, out[lost:])
        # A write that started while we copied may have overwritten the front of what we copied.
        torn = min(n, max(lost, self._claimed - self.capacity - start))
        if torn > lost:
            out[lost:torn] = 0.0
            lost = torn
        self.lost_samples += lost
        self.read_index = end
        if n == 0:
            self.empty_reads += 1
        if self.on_read is not None:
            self.on_read()
        return RingRead(start=start, data=out, lost=lost)

    def _copy(self, start: int, end: int, out: np.ndarray) -> None:
        n = end - start
        if n <= 0:
            return
        pos = start % self.capacity
        first = min(n, self.capacity - pos)
        out[:first] = self._buf[pos : pos + first]
        if first < n:
            out[first:] = self._buf[: n - first]

    def time_of(self, index: int) -> float | None:
        """Monotonic time at which sample ``index`` was written (None if not written or too old to know)."""
        count = self._log_count
        size = self._log_end.size
        if count == 0 or index >= self.write_index:
            return None
        m = min(count, size)
        order = (np.arange(count - m, count) % size).astype(np.int64)
        ends = self._log_end[order]
        k = int(np.searchsorted(ends, index, side="right"))
        if k >= m or index < self._log_start[order[k]]:
            return None  # not written yet, or the write that carried it has dropped out of the log
        return float(self._log_time[order[k]])
