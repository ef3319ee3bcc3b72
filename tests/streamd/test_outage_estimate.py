"""The length of a device outage, measured from the arrival times of the blocks after a reopen.

A device that hands over a backlog in a burst after a reopen (PulseAudio does, now and then half a
second of it) must not make the outage look longer than it was: the stream clock would then run ahead
of the wall clock for the rest of the run.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from streamd.device_source import MAX_SETTLE_S, MIN_GAP_S, SETTLE_S, DeviceSource, OutageEstimate
from streamd.errors import AudioInputError
from streamd.input_devices import list_input_devices

RATE = 44100
BLOCK = 882  # 20 ms
BLOCK_S = BLOCK / RATE


def arrivals(lost_s: float, burst_blocks: int, steady_blocks: int, jitter_s: float = 0.0) -> list[float]:
    """Arrival times after a reopen, the last block before the outage having arrived at 0: the first
    ``burst_blocks`` (a backlog) all arrive with the block that ends it, the rest at their own pace."""
    rng = np.random.default_rng(0)
    ends = [lost_s + (k + 1) * BLOCK_S for k in range(burst_blocks + steady_blocks)]
    burst_end = ends[burst_blocks - 1] if burst_blocks else 0.0
    times = [max(end, burst_end) + jitter_s * float(rng.random()) for end in ends]
    return times


def settle(estimate: OutageEstimate, times: list[float]) -> int:
    """Feed blocks until the estimate settles; the number of blocks it took."""
    for count, at in enumerate(times, 1):
        if estimate.add(at, BLOCK):
            return count
    raise AssertionError("the estimate never settled")


@pytest.mark.parametrize("burst_blocks", [0, 1, 25, 60])
def test_a_burst_after_the_reopen_does_not_lengthen_the_outage(burst_blocks):
    estimate = OutageEstimate(0.0, RATE)
    used = settle(estimate, arrivals(4.0, burst_blocks, 200, jitter_s=0.001))
    assert estimate.lost_s == pytest.approx(4.0, abs=0.002)
    # It waits no longer than the burst plus SETTLE_S of audio at its own pace.
    assert used * BLOCK_S <= max(burst_blocks * BLOCK_S, 0) + SETTLE_S + 2 * BLOCK_S


def test_blocks_in_time_mean_no_outage():
    estimate = OutageEstimate(0.0, RATE)
    settle(estimate, arrivals(0.0, 0, 50, jitter_s=0.003))
    assert estimate.lost_s < MIN_GAP_S


def test_an_endless_burst_is_held_back_no_longer_than_the_time_away_plus_max_settle():
    estimate = OutageEstimate(0.0, RATE)
    used = settle(estimate, [5.0] * 1000)  # everything at once: the device never settles
    assert used * BLOCK_S == pytest.approx(5.0 + MAX_SETTLE_S, abs=1.5 * BLOCK_S)
    assert estimate.lost_s == 0.0  # more audio came than the time away: none of it was lost


def test_a_backlog_longer_than_max_settle_is_waited_for():
    """After a long pause the device hands over many seconds at once (PulseAudio kept 12 s of a 15-s
    pause); the estimate waits for the burst's end instead of counting the backlog as lost."""
    estimate = OutageEstimate(0.0, RATE)
    used = settle(estimate, arrivals(3.0, round(12.0 / BLOCK_S), 200, jitter_s=0.001))
    assert estimate.lost_s == pytest.approx(3.0, abs=0.002)
    assert used * BLOCK_S == pytest.approx(12.0 + SETTLE_S, abs=2 * BLOCK_S)


def _input_devices() -> list:
    try:
        return list_input_devices()
    except AudioInputError:
        return []


class DrivenSource:
    """A real input device's ``DeviceSource``, its callback driven with chosen arrival times (no stream
    opened); block ``n`` holds the value ``n / 1000`` so that order and losses show."""

    def __init__(self, **kwargs: float) -> None:
        if not _input_devices():
            pytest.skip("no audio input device")
        self.source = DeviceSource("mic", **kwargs)
        self.block = self.source.block
        self.block_s = self.block / self.source.sample_rate
        self.now = 0.0
        self.source.clock = lambda: self.now
        self._count = 0

    def deliver(self, at: float) -> None:
        self.now = at
        block = np.full((self.block, self.source.channels), np.float32(self._count / 1000), np.float32)
        self._count += 1
        self.source._callback(block, self.block, None, SimpleNamespace(input_overflow=False))


@pytest.mark.live
def test_a_device_source_marks_the_measured_gap_and_keeps_every_block_in_order():
    """A real input device's source, its callback driven with chosen arrival times (no stream opened)."""
    driven = DrivenSource(block_s=0.02)
    source, block, block_s, deliver = driven.source, driven.block, driven.block_s, driven.deliver
    for k in range(10):
        deliver((k + 1) * block_s)
    last = driven.now
    source._reopened = True  # what restart() sets; the device was away for 3 s
    for k in range(40):  # 20 blocks of backlog in a burst, then blocks at their own pace
        deliver(last + 3.0 + (max(k, 19) + 1) * block_s)
        if k < 19 + round(SETTLE_S / block_s) - 1:
            assert source.ring.write_index == 10 * block and source.delivered == (11 + k) * block
    gaps = source.take_gaps()
    assert gaps == [(10 * block, round(3.0 * source.sample_rate))]
    data = source.ring.read().data[:, 0]
    assert data.size == 50 * block
    assert np.allclose(data[::block], np.arange(50) / 1000)  # nothing lost, nothing reordered


@pytest.mark.live
def test_a_late_block_after_a_pause_is_measured_and_held_blocks_wait_for_room_in_the_ring():
    """No reopen: the process was paused for 6 s and the device kept only the last 1 s (a backlog burst).
    The lost 5 s are a gap before the backlog; the blocks go into a ring smaller than the backlog only as
    the reader frees room, none overwritten, in order."""
    driven = DrivenSource(block_s=0.02, ring_s=0.5)
    source, block, block_s, deliver = driven.source, driven.block, driven.block_s, driven.deliver
    got = []
    for k in range(10):
        deliver((k + 1) * block_s)
    got.append(source.ring.read().data[:, 0])
    last = driven.now
    backlog = round(1.0 / block_s)
    for k in range(backlog + 40):  # 1 s of backlog at once after 6 s away, then blocks at their own pace
        deliver(last + 6.0 + max(0, k - backlog + 1) * block_s)
        if k % 10 == 0 or k >= backlog:  # a reader busy now and then during the burst
            assert source.ring.available() <= source.ring.capacity
            got.append(source.ring.read().data[:, 0])
    source.stop()
    got.append(source.ring.read().data[:, 0])
    assert source.take_gaps() == [(10 * block, round(5.0 * source.sample_rate))]
    assert source.ring.overruns == 0 and source.ring.lost_samples == 0
    data = np.concatenate(got)
    assert data.size == (10 + backlog + 40) * block
    assert np.allclose(data[::block], np.arange(10 + backlog + 40) / 1000)


@pytest.mark.live
def test_blocks_arriving_at_their_own_pace_are_not_held():
    driven = DrivenSource(block_s=0.02)
    for k in range(100):  # up to 0.4 s late now and then: jitter, no pause
        driven.deliver((k + 1) * 0.02 + (0.4 if k % 7 == 0 else 0.0))
        assert driven.source.ring.write_index == (k + 1) * driven.block
    assert driven.source.take_gaps() == []
