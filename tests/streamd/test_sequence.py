"""Sequence numbers: the publisher's stamper and the subscriber's exact gap count."""

from __future__ import annotations

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
