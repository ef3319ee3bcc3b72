"""A live network stream's clock: catching up at start, pacing, and re-anchoring at the live edge."""

from __future__ import annotations

import pytest

from streamd import stream_clock
from streamd.stream_clock import AHEAD_S, START_BACKLOG_S, StreamClock

RATE = 1000


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


def test_the_start_up_backlog_is_read_at_once_up_to_its_cap(clock_time: FakeTime) -> None:
    clock = StreamClock(RATE)  # connected at 100 s
    clock_time.now = 103.0  # the model loaded in 3 s: all of it is caught up
    clock.start()
    assert clock.wait_s(3 * RATE) == 0 and clock.missing(0) == 3 * RATE
    late = StreamClock(RATE)
    clock_time.now = 120.0  # 17 s (a wait for a subscriber): at most START_BACKLOG_S of it
    late.start()
    assert late.missing(0) == START_BACKLOG_S * RATE


def test_writing_waits_only_beyond_the_allowed_lead(clock_time: FakeTime) -> None:
    clock = StreamClock(RATE)
    assert clock.wait_s(round(AHEAD_S * RATE)) == 0
    assert clock.wait_s(round((AHEAD_S + 2) * RATE)) == pytest.approx(2.0)


def test_the_live_edge_re_anchors_ahead_always_and_behind_once(clock_time: FakeTime) -> None:
    """A server that sends only the present skipped what it sent while the model loaded: at its first
    live edge the stream is behind and the clock follows it (a reconnect's outage would otherwise count
    the start-up). Later, a stream ahead (a fast sender clock, a burst) moves the anchor; one behind does
    not (its lost time is an outage's to mark)."""
    clock = StreamClock(RATE)
    clock_time.now = 108.0  # 8 s of start-up; the server kept only 1 s of it
    clock.at_live_edge(1 * RATE, 0.1)
    assert clock.missing(round(1.1 * RATE)) == 0
    clock_time.now += 10.0
    clock.at_live_edge(round(11.4 * RATE), 0.1)  # 0.4 s ahead: followed
    assert clock.missing(round(11.5 * RATE)) == 0
    clock_time.now += 10.0
    clock.at_live_edge(round(20.5 * RATE), 0.1)  # 0.9 s behind: kept
    assert clock.missing(round(20.6 * RATE)) == round(0.9 * RATE)
