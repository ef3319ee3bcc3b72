"""SampleRing: absolute indices, wrap-around, overruns, write times, and a real two-thread run."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from streamd.ring import SampleRing


def _ramp(start: int, n: int, channels: int = 1) -> np.ndarray:
    """Samples whose value is their own absolute index (exact in float32 below 2**24)."""
    return np.repeat(np.arange(start, start + n, dtype=np.float32)[:, None], channels, axis=1)


def test_reads_return_what_was_written_across_wrap_around():
    rng = np.random.default_rng(0)
    ring = SampleRing(capacity=1000, channels=2)
    written = read = 0
    out = []
    for _ in range(200):
        n = int(rng.integers(1, 400))
        ring.write(_ramp(written, n, 2))
        written += n
        got = ring.read(int(rng.integers(1, 1000)))
        assert got.start == read and got.lost == 0
        read += got.data.shape[0]
        out.append(got.data)
    out.append(ring.read().data)
    data = np.concatenate(out)
    assert data.shape == (written, 2)
    np.testing.assert_array_equal(data[:, 0], np.arange(written, dtype=np.float32))
    np.testing.assert_array_equal(data[:, 0], data[:, 1])
    assert ring.overruns == 0 and ring.lost_samples == 0


def test_mono_blocks_may_be_one_dimensional():
    ring = SampleRing(capacity=10)
    ring.write(np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(ring.read().data[:, 0], np.arange(4))


def test_overrun_is_counted_and_lost_samples_read_as_zeros_at_their_index():
    ring = SampleRing(capacity=100)
    ring.write(_ramp(0, 60))
    ring.write(_ramp(60, 60))  # 20 unread samples overwritten
    assert ring.overruns == 1
    assert ring.free() == -20
    got = ring.read()
    assert got.start == 0 and got.lost == 20 and got.data.shape[0] == 120
    np.testing.assert_array_equal(got.data[:20, 0], 0.0)
    np.testing.assert_array_equal(got.data[20:, 0], np.arange(20, 120))
    assert ring.lost_samples == 20
    ring.write(_ramp(120, 10))
    assert ring.overruns == 1 and ring.read().start == 120


def test_a_block_larger_than_the_ring_keeps_its_newest_samples():
    ring = SampleRing(capacity=50)
    ring.write(_ramp(0, 130))
    got = ring.read()
    assert ring.write_index == 130 and got.lost == 80
    np.testing.assert_array_equal(got.data[80:, 0], np.arange(80, 130))


def test_write_times_are_logged_per_block():
    ring = SampleRing(capacity=100, log_size=4)
    assert ring.time_of(0) is None
    for i, n in enumerate([10, 5, 20]):
        ring.write(np.zeros(n, np.float32), now=100.0 + i)
    assert ring.time_of(0) == 100.0 and ring.time_of(9) == 100.0
    assert ring.time_of(10) == 101.0 and ring.time_of(14) == 101.0
    assert ring.time_of(34) == 102.0
    assert ring.time_of(35) is None  # not written yet
    for i in range(3):
        ring.write(np.zeros(1, np.float32), now=200.0 + i)
    assert ring.time_of(0) is None  # its write has left the 4-entry log
    assert ring.time_of(20) == 102.0 and ring.time_of(37) == 202.0


def test_close_and_exhausted_and_hooks():
    calls = []
    ring = SampleRing(capacity=10, on_write=lambda: calls.append("w"), on_read=lambda: calls.append("r"))
    ring.write(np.ones(3, np.float32))
    ring.close()
    assert ring.closed and not ring.exhausted()
    ring.read()
    assert ring.exhausted() and ring.empty_reads == 0
    ring.read()
    assert calls == ["w", "w", "r", "r"] and ring.empty_reads == 1


def test_rejects_bad_sizes():
    with pytest.raises(ValueError):
        SampleRing(0)


def test_concurrent_writer_and_reader_never_see_wrong_samples():
    """A real producer thread against a real consumer: every sample is right or counted as lost."""
    ring = SampleRing(capacity=2048)
    total = 400_000
    done = threading.Event()

    def produce() -> None:
        rng = np.random.default_rng(1)
        written = 0
        while written < total:
            n = min(int(rng.integers(1, 700)), total - written)
            ring.write(_ramp(written, n))
            written += n
        ring.close()
        done.set()

    thread = threading.Thread(target=produce)
    thread.start()
    seen = lost = 0
    while not ring.exhausted():
        got = ring.read(int(np.random.default_rng(seen).integers(1, 3000)))
        assert got.start == seen
        good = got.data[got.lost :, 0]
        np.testing.assert_array_equal(good, np.arange(got.start + got.lost, got.start + got.data.shape[0]))
        np.testing.assert_array_equal(got.data[: got.lost, 0], 0.0)
        seen += got.data.shape[0]
        lost += got.lost
    thread.join(5)
    assert done.is_set() and seen == total
    assert lost == ring.lost_samples
    assert (ring.overruns == 0) == (lost == 0)
