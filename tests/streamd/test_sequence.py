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
