"""Sequence numbers: the publisher's stamper and the subscriber's exact gap count."""

from __future__ import annotations

import pytest

from streamd.sequence import Gap, GapCounter, SequenceStamper


def _msg(stream: str, seq: int) -> dict:
    return {"stream": stream, "seq": seq}


def test_stamper_numbers_each_stream_from_zero_and_only_what_was_sent() -> None:
    stamper = SequenceStamper()
    assert stamper.peek("a") == 0
    stamper.advance("a")
    stamper.advance("a")
    assert (stamper.peek("a"), stamper.peek("b")) == (2, 0)
    assert stamper.peek("a") == 2  # peeking (a message that then failed to encode) takes no number


def test_gaps_are_counted_exactly_per_stream() -> None:
    counter = GapCounter()
    received = [("a", 7), ("b", 0), ("a", 8), ("a", 12), ("b", 1), ("b", 2), ("a", 13), ("a", 15), ("b", 9)]
    gaps = [counter.observe(_msg(stream, seq)) for stream, seq in received]
    assert [g for g in gaps if g] == [Gap("a", 9, 11), Gap("a", 14, 14), Gap("b", 3, 8)]
    assert (counter.missed, counter.gaps, counter.restarts) == (3 + 1 + 6, 3, 0)
    assert Gap("a", 9, 11).describe() == "missed 3 message(s) of stream a (seq 9-11)"
    assert Gap("a", 14, 14).describe() == "missed 1 message(s) of stream a (seq 14)"


def test_joining_late_a_restarted_daemon_and_unnumbered_messages_are_no_gaps() -> None:
    counter = GapCounter()
    assert counter.observe(_msg("a", 500)) is None  # joined mid-stream: nothing before counts
    assert counter.observe(_msg("a", 501)) is None
    assert counter.observe(_msg("a", 0)) is None  # seq went back: a new daemon run
    assert counter.observe({"stream": "a"}) is None
    assert counter.observe({"stream": "a", "seq": True}) is None
    assert counter.observe(_msg("a", 1)) is None
    assert (counter.missed, counter.gaps, counter.restarts) == (0, 0, 1)


def _observe_all(counter: GapCounter, received: list[tuple[str, int]]) -> list[Gap]:
    return [gap for stream, seq in received if (gap := counter.observe(_msg(stream, seq)))]


def test_a_seq_going_back_and_forth_is_two_publishers_once_per_stream() -> None:
    """Two publishers of one name (aligned, one far ahead, in bursts) take turns: every step back was a
    "restart" and losses of either went uncounted. Said once per stream, and that stream counted no more;
    a stream restarted once, or twice, is still a restart."""
    said: list[str] = []
    counter = GapCounter(on_shared=said.append)
    aligned = [("a", k // 2) for k in range(12)]  # 0, 0, 1, 1, 2, 2, ...
    ahead = [("b", 100), ("b", 0), ("b", 101), ("b", 1), ("b", 102), ("b", 2)]
    bursts = [("c", 0), ("c", 1), ("c", 2), ("c", 0), ("c", 1), ("c", 3), ("c", 4), ("c", 2), ("c", 9)]
    assert _observe_all(counter, aligned + ahead + bursts) == []
    assert said == counter.shared == ["a", "b", "c"]
    assert counter.missed == counter.gaps == 0
    restarted = [("d", 500), ("d", 501), ("d", 0), ("d", 1), ("d", 2), ("d", 5), ("d", 0), ("d", 1)]
    assert _observe_all(counter, restarted) == [Gap("d", 3, 4)]  # a run's own gap still counts
    assert said == ["a", "b", "c"] and counter.restarts == 3 + 2  # a, b and c's first steps back
    long_run = [("e", 7), ("e", 8), ("e", 0), *[("e", k) for k in range(1, 20)]]  # passes 9 in order
    assert _observe_all(counter, long_run) == [] and "e" not in said


def test_a_shared_streams_gaps_are_taken_back_whichever_publisher_comes_first() -> None:
    """The second publisher's first message jumping ahead (0, 100, 1, 101) was a 99-message gap, counted
    before the stream was found shared and kept in the totals beside the warning that its losses cannot
    be counted. That jump comes out of the totals when the stream is found shared (withdrawn), in either
    order; the stream's earlier gaps and other streams' gaps stay."""
    said: list[str] = []
    counter = GapCounter(on_shared=said.append)
    ahead = [("a", 0), ("x", 0), ("a", 100), ("x", 3), ("a", 1), ("a", 101), ("a", 2), ("a", 150)]
    assert _observe_all(counter, ahead) == [Gap("a", 1, 99), Gap("x", 1, 2)]  # a's line printed at once
    assert said == counter.shared == ["a"]
    assert (counter.missed, counter.gaps, counter.withdrawn) == (2, 1, 1)  # x's alone; a's one taken back
    behind = [("b", 100), ("b", 0), ("b", 101), ("b", 1), ("b", 300), ("x", 5)]  # a step back first
    assert _observe_all(counter, behind) == [Gap("x", 4, 4)]
    assert said == counter.shared == ["a", "b"]
    assert (counter.missed, counter.gaps, counter.withdrawn) == (3, 2, 1)
    # a restarted run whose gap happens to end where the old one stopped looks shared: its earlier,
    # real losses stay counted, only the jump into the old numbers is not (there was none to withdraw)
    misfire = [("m", 0), ("m", 1), ("m", 5), ("m", 6), ("m", 0), ("m", 1), ("m", 2), ("m", 3), ("m", 7)]
    assert _observe_all(counter, misfire) == [Gap("m", 2, 4)] and "m" in counter.shared
    assert (counter.missed, counter.gaps, counter.withdrawn) == (6, 3, 1)


def test_a_single_restart_is_a_restart_whose_gaps_still_count() -> None:
    """``seq`` back to 0 once, then rising past where it was: a new daemon run, not a shared stream, and a
    gap on either side of the restart is a loss."""
    counter = GapCounter(on_shared=lambda stream: pytest.fail(f"{stream} taken for shared"))
    received = [("r", 5), ("r", 6), ("r", 9), ("r", 0), ("r", 1), ("r", 4), *[("r", k) for k in range(5, 12)]]
    assert _observe_all(counter, received) == [Gap("r", 7, 8), Gap("r", 2, 3)]
    assert counter.shared == [] and counter.restarts == 1
    assert (counter.missed, counter.gaps, counter.withdrawn) == (4, 2, 0)
