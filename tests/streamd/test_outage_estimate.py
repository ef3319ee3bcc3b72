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


def test_an_endless_burst_is_held_back_no_longer_than_max_settle():
    estimate = OutageEstimate(0.0, RATE)
    used = settle(estimate, [5.0] * 1000)  # everything at once: the device never settles
    assert used * BLOCK_S == pytest.approx(MAX_SETTLE_S, abs=BLOCK_S)
    assert estimate.lost_s == pytest.approx(5.0 - used * BLOCK_S)


def _input_devices() -> list:
    try:
        return list_input_devices()
    except AudioInputError:
        return []


@pytest.mark.live
def test_a_device_source_marks_the_measured_gap_and_keeps_every_block_in_order():
    """A real input device's source, its callback driven with chosen arrival times (no stream opened)."""
    if not _input_devices():
        pytest.skip("no audio input device")
    source = DeviceSource("mic", block_s=0.02)
    block = source.block
    block_s = block / source.sample_rate
    now = [0.0]
    source.clock = lambda: now[0]
    ok = SimpleNamespace(input_overflow=False)
    counter = iter(range(10**6))

    def deliver(at: float) -> None:
        now[0] = at
        value = np.float32(next(counter) / 1000)
        source._callback(np.full((block, source.channels), value, np.float32), block, None, ok)

    for k in range(10):
        deliver((k + 1) * block_s)
    last = now[0]
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
