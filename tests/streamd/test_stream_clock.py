"""A live network stream's clock: the start-up backlog, pacing, and re-anchoring at the live edge only."""

from __future__ import annotations

import pytest

from streamd import stream_clock
from streamd.stream_clock import AHEAD_S, LIVE_EDGE_FRAMES, StreamClock

RATE = 1000
FRAME_S = 0.1


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture()
def clock_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(stream_clock.time, "monotonic", fake.monotonic)
    return fake


def _live(clock: StreamClock, clock_time: FakeTime, position_s: float) -> float:
    """Frames that each had to be waited for, from ``position_s``; the stream position after them."""
    for _ in range(LIVE_EDGE_FRAMES):
        clock_time.now += FRAME_S
        clock.frame(round(position_s * RATE), FRAME_S, FRAME_S)
        position_s += FRAME_S
    return position_s


def test_the_start_up_backlog_is_read_at_once_and_writing_waits_only_beyond_the_lead(
    clock_time: FakeTime,
) -> None:
    clock = StreamClock(RATE)  # connected at 100 s
    clock_time.now = 112.0  # 12 s of start-up (a wait for a subscriber): all of it read without waiting
    assert clock.wait_s(0) == 0 and clock.wait_s(12 * RATE) == 0
    assert clock.wait_s(round((12 + AHEAD_S + 2) * RATE)) == pytest.approx(2.0)


def test_the_live_edge_re_anchors_ahead_always_and_behind_only_before_a_reconnect(
    clock_time: FakeTime,
) -> None:
    """A server that sends only the present skipped what it sent while the model loaded: at its first
    live edge the stream is behind and the clock follows it (a reconnect's outage would otherwise count
    the start-up). Later a stream ahead (a burst, a fast sender clock) moves the anchor; one behind does
    not (its lost time is an outage's to mark)."""
    clock = StreamClock(RATE)
    clock_time.now = 108.0  # 8 s of start-up; the server kept only 1 s of it
    end = _live(clock, clock_time, 1.0)
    assert clock.missing(round(end * RATE)) == 0
    clock_time.now += 10.0
    end = _live(clock, clock_time, end + 10.0 + 0.4)  # 0.4 s ahead: followed
    assert clock.missing(round(end * RATE)) == 0
    clock_time.now += 10.0
    end = _live(clock, clock_time, end + 10.0 - 0.9)  # 0.9 s behind: kept
    assert clock.missing(round(end * RATE)) == round(0.9 * RATE)


def test_a_paced_reader_is_never_at_the_live_edge(clock_time: FakeTime) -> None:
    """A file served faster than real time is paced; a busy interpreter can make its reads take long,
    which looked like the live edge and re-anchored the clock forward each time: the stream ran away."""
    clock = StreamClock(RATE)
    position = round((AHEAD_S + 1) * RATE)
    for _ in range(20):
        assert clock.wait_s(position) > 0  # paced
        clock.frame(position, FRAME_S, 0.5)  # a slow read of a buffered frame
    clock_time.now += 1.0
    assert clock.wait_s(position) == pytest.approx(0.0)  # the anchor did not move
