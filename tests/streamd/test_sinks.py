"""The JSON-lines sink when its reader goes away (``streamd replay --json | head -1``): a real pipe whose
read end is closed; the sink silences the stream and the publisher drops it without an error or a log."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TextIO

import pytest
from zmq_helpers import numbered

from streamd import messages
from streamd.publisher import Publisher
from streamd.sinks import JsonLinesSink

WALL = 1_700_000_000.0


def _prediction(i: int) -> dict:
    return messages.prediction(
        "mic", 0.5 * i, 0.5 * i + 5.0, "tiny", [("dog", 0.9)], 2.0, window_index=i, wall_time=WALL
    )


@pytest.fixture()
def closed_pipe() -> Iterator[TextIO]:
    """A text stream writing into a pipe nobody reads any more."""
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    stream = os.fdopen(write_fd, "w")
    yield stream
    stream.close()


def test_reader_gone_raises_once_then_the_sink_is_silent(closed_pipe: TextIO) -> None:
    sink = JsonLinesSink(closed_pipe)
    with pytest.raises(BrokenPipeError):
        sink(_prediction(0))
    assert sink.reader_gone
    assert os.readlink(f"/proc/self/fd/{closed_pipe.fileno()}") == os.devnull  # later flushes succeed
    sink(_prediction(1))  # nothing raised, nothing written
    closed_pipe.flush()


def test_publisher_drops_a_sink_whose_reader_is_gone(
    closed_pipe: TextIO, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[dict] = []
    publisher = Publisher("inproc://sink-reader-gone")
    publisher.add_sink(JsonLinesSink(closed_pipe))
    publisher.add_sink(got.append)
    sent = [_prediction(i) for i in range(5)]
    with caplog.at_level(logging.DEBUG, logger="streamd.publisher"):
        publisher.start()
        for msg in sent:
            publisher.publish(msg)
        publisher.stop(timeout=5.0)
    assert got == numbered(sent)  # the other sinks (and the socket) go on
    assert publisher.counters == {
        "published": 5,
        "publish_dropped": 0,
        "sink_errors": 0,
        "invalid_messages": 0,
    }
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
