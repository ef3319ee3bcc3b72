"""The publisher on real ZeroMQ sockets (127.0.0.1): delivery, order, topics, drops, stalls, bind errors."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import pytest
import zmq
from zmq_helpers import Collector, esc50_categories, numbered, validate

from streamd import messages
from streamd.errors import StreamdError
from streamd.publisher import Publisher, PublishError
from streamd.sinks import JsonLinesSink

WALL = 1_700_000_000.0


def _prediction(i: int, stream: str = "mic", model: str = "m") -> dict:
    pairs = [(name, 1.0 / (j + 1)) for j, name in enumerate(LABELS)]
    return messages.prediction(stream, i, i + 5.0, model, pairs, 2.0, window_index=i, wall_time=WALL)


def _kernel_send_buffer_max() -> int:
    """The most a TCP send buffer can grow to (Linux autotuning), which a stalled peer's data can fill."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 * 1024 * 1024


LABELS = esc50_categories()[:5]


@pytest.fixture
def publisher():
    started: list[Publisher] = []

    def make(**kwargs) -> Publisher:
        pub = Publisher("tcp://127.0.0.1:*", **kwargs)
        pub.start()
        started.append(pub)
        return pub

    yield make
    for pub in started:
        pub.stop()


def _connected(pub: Publisher) -> None:
    assert pub.wait_for_subscriber(5.0), "no subscriber connected within 5 s"
    time.sleep(0.05)  # let every collector's subscription arrive, not just the first


def test_delivers_every_message_in_order_with_topics(publisher) -> None:
    pub = publisher()
    assert pub.endpoint.startswith("tcp://127.0.0.1:") and not pub.endpoint.endswith(":*")
    everything = Collector(pub.endpoint).start()
    events_of_a = Collector(pub.endpoint, "streamd.a.event").start()
    _connected(pub)
    sent = []
    for i in range(30):
        sent.append(_prediction(i, stream="a" if i % 2 else "b"))
        if i % 10 == 9:
            sent.append(messages.event("a", "dog", "start", i, i + 5, 0.9, wall_time=WALL))
    sent.append(messages.status("b", 0, 35, messages.empty_counters(), "finished", wall_time=WALL))
    for msg in sent:
        pub.publish(msg)
    assert everything.wait_for(lambda got: len(got) == len(sent), 5.0)
    assert events_of_a.wait_for(lambda got: len(got) == 3, 5.0)
    time.sleep(0.1)
    expected = numbered(sent)  # seq counts each stream's messages from 0, with no holes
    assert [m["seq"] for m in expected if m["stream"] == "a"] == list(range(18))
    assert everything.stop() == expected
    assert events_of_a.stop() == [m for m in expected if m["type"] == "event"]
    assert pub.counters == {"published": 34, "publish_dropped": 0, "sink_errors": 0, "invalid_messages": 0}


def test_stop_sends_what_is_queued(publisher) -> None:
    pub = publisher()
    collector = Collector(pub.endpoint).start()
    _connected(pub)
    sent = [_prediction(i) for i in range(2000)]
    for msg in sent:
        pub.publish(msg)
    pub.stop(timeout=5.0)
    assert collector.wait_for(lambda got: len(got) == len(sent), 5.0)
    assert collector.stop() == numbered(sent)
    assert pub.counters["published"] == 2000
    pub.publish(_prediction(0))  # after stop: dropped and counted, never sent
    assert pub.counters["publish_dropped"] == 1


def test_absent_subscriber_never_blocks(publisher) -> None:
    pub = publisher(sndhwm=10)
    started = time.perf_counter()
    for i in range(5000):
        pub.publish(_prediction(i))
    deadline = time.monotonic() + 10.0
    while pub.counters["published"] < 5000 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pub.counters == {"published": 5000, "publish_dropped": 0, "sink_errors": 0, "invalid_messages": 0}
    assert time.perf_counter() - started < 10.0


def test_stalled_subscriber_slows_nobody(publisher) -> None:
    """A subscriber that stops reading loses messages; the publisher and a healthy subscriber do not wait."""
    model = "flood-" + "x" * 4000  # 4 KB bodies fill the stalled pipe sooner
    body_bytes = len(messages.encode(_prediction(0, "flood", model))[1])
    sndhwm = 100
    # Twice what the stalled pipe can absorb (ZeroMQ queue + kernel buffers), so drops must happen.
    total = 2 * (_kernel_send_buffer_max() // body_bytes + sndhwm)
    pub = publisher(sndhwm=sndhwm)
    healthy = Collector(pub.endpoint).start()
    context = zmq.Context()
    stalled = context.socket(zmq.SUB)
    stalled.rcvhwm = 1
    stalled.setsockopt(zmq.RCVBUF, 4096)
    stalled.subscribe(b"streamd")
    stalled.connect(pub.endpoint)
    try:
        primed = 0  # counted here: some may still be in the publisher's queue when the first arrives
        while not stalled.poll(10):  # the stalled subscriber is connected once a first message arrives
            pub.publish(_prediction(0))
            primed += 1
        stalled.recv_multipart()
        publish_s = []
        for i in range(total):
            before = time.perf_counter()
            pub.publish(_prediction(i, "flood", model))
            publish_s.append(time.perf_counter() - before)
            if i % 50 == 49:  # pace the flood so that only the stalled pipe overflows
                assert healthy.wait_for(lambda got, n=i: _count(got, "flood") > n, 10.0)
        assert healthy.wait_for(lambda got: _count(got, "flood") == total, 10.0)
        flood = [m for m in healthy.stop() if m["stream"] == "flood"]
        assert [m["window_index"] for m in flood] == list(range(total))
        assert pub.counters["published"] == primed + total and pub.counters["publish_dropped"] == 0
        # publish() only enqueues: fast as a rule; a blocked socket would stall it for good, while a busy
        # machine may only preempt the thread now and then (the worst case is bounded loosely for that).
        assert sorted(publish_s)[len(publish_s) // 2] < 0.005
        assert max(publish_s) < 1.0
        late = 0
        while stalled.poll(300):
            late += messages.decode(stalled.recv_multipart())["stream"] == "flood"
        assert late < total  # ZeroMQ dropped for the stalled subscriber instead of blocking the publisher
    finally:
        stalled.close(linger=0)
        context.term()


def _count(got: list[dict], stream: str) -> int:
    return sum(m["stream"] == stream for m in got)


def test_full_queue_drops_and_counts_exactly(publisher) -> None:
    entered, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def blocking_sink(msg: dict) -> None:
        entered.set()
        release.wait(10.0)
        seen.append(msg["window_index"])

    pub = publisher(queue_size=10)
    pub.add_sink(blocking_sink)
    pub.publish(_prediction(0))
    assert entered.wait(5.0)
    started = time.perf_counter()
    for i in range(1, 101):
        pub.publish(_prediction(i))
    assert time.perf_counter() - started < 1.0  # a stuck sink never blocks publish()
    assert pub.counters["publish_dropped"] == 90
    release.set()
    pub.stop(timeout=5.0)
    assert seen == list(range(11))
    assert pub.counters == {"published": 11, "publish_dropped": 90, "sink_errors": 0, "invalid_messages": 0}


def test_a_blocking_publisher_waits_for_room_and_drops_nothing(publisher) -> None:
    """The ``block`` overload policy (a replay): a full queue holds ``publish`` back instead of dropping;
    once stopped, a publish still waiting is dropped and counted rather than hanging."""
    release = threading.Event()
    seen: list[int] = []
    pub = publisher(queue_size=2, block=True)
    pub.add_sink(lambda msg: (release.wait(10.0), seen.append(msg["window_index"])))
    done = threading.Event()
    producer = threading.Thread(target=lambda: ([pub.publish(_prediction(i)) for i in range(50)], done.set()))
    producer.start()
    assert not done.wait(0.5)  # held back by the full queue, not dropping
    assert pub.counters["publish_dropped"] == 0
    release.set()
    assert done.wait(10.0)
    pub.stop(timeout=5.0)
    producer.join(5.0)
    assert seen == list(range(50))
    assert pub.counters == {"published": 50, "publish_dropped": 0, "sink_errors": 0, "invalid_messages": 0}


def test_a_blocking_publisher_stopped_while_full_drops_and_counts(publisher) -> None:
    stuck = threading.Event()
    pub = publisher(queue_size=1, block=True)
    pub.add_sink(lambda msg: stuck.wait(10.0))
    pub.publish(_prediction(0))  # taken by the thread, stuck in the sink
    time.sleep(0.2)
    pub.publish(_prediction(1))  # fills the queue
    waiting = threading.Thread(target=pub.publish, args=(_prediction(2),))
    waiting.start()
    time.sleep(0.3)
    assert waiting.is_alive()  # held back
    stopper = threading.Thread(target=pub.stop, kwargs={"timeout": 0.5})
    stopper.start()
    waiting.join(5.0)
    assert not waiting.is_alive() and pub.counters["publish_dropped"] >= 1
    stuck.set()
    stopper.join(5.0)


def test_flush_waits_until_every_queued_message_is_sent_and_seen(publisher) -> None:
    release = threading.Event()
    seen: list[int] = []

    def slow_sink(msg: dict) -> None:
        release.wait(10.0)
        time.sleep(0.001)
        seen.append(msg["window_index"])

    pub = publisher()
    pub.add_sink(slow_sink)
    for i in range(200):
        pub.publish(_prediction(i))
    assert not pub.flush(0.1)  # the sink holds everything back: flush gives up at its timeout
    release.set()
    assert pub.flush(10.0)
    assert seen == list(range(200)) and pub.counters["published"] == 200  # read at once: nothing pending


def test_sinks_see_every_message_and_failures_are_counted(publisher) -> None:
    pub = publisher()
    got: list[dict] = []

    def failing_sink(msg: dict) -> None:
        raise RuntimeError("boom")

    pub.add_sink(got.append)
    pub.add_sink(failing_sink)
    sent = [_prediction(i) for i in range(5)]
    invalid = _prediction(99) | {"latency_ms": float("nan")}
    for msg in [*sent[:2], invalid, *sent[2:]]:
        pub.publish(msg)
    pub.stop(timeout=5.0)
    assert got == numbered(sent)  # the invalid message takes no seq: no gap for anyone
    assert pub.counters == {"published": 5, "publish_dropped": 0, "sink_errors": 5, "invalid_messages": 1}


def test_json_lines_sink_prints_each_message_once(publisher) -> None:
    out = io.StringIO()
    pub = publisher()
    pub.add_sink(JsonLinesSink(out))
    sent = [_prediction(i) for i in range(3)] + [
        messages.event("mic", "dög", "end", 0, 5, 0.5, wall_time=WALL)
    ]
    for msg in sent:
        pub.publish(msg)
    pub.stop(timeout=5.0)
    lines = out.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == numbered(sent)
    assert lines[-1].isascii() and "\\u00f6" in lines[-1]  # safe on any terminal encoding
    alone = io.StringIO()  # the publisher's once-encoded lines are exactly the sink's own
    for msg in numbered(sent):
        JsonLinesSink(alone)(msg)
    assert alone.getvalue().splitlines() == lines
    for line in lines:
        validate(json.loads(line))


def test_port_in_use_is_one_clear_error(publisher) -> None:
    first = publisher()
    second = Publisher(first.endpoint)
    with pytest.raises(PublishError) as info:
        second.start()
    text = str(info.value)
    assert text == f"cannot bind {first.endpoint}: address already in use (is another streamd running? " + (
        "choose another port)"
    )
    assert "\n" not in text and isinstance(info.value, StreamdError)


def test_ipv6_loopback_and_ipc_endpoints(tmp_path: Path) -> None:
    for endpoint in ("tcp://[::1]:*", f"ipc://{tmp_path / 'streamd.ipc'}"):
        pub = Publisher(endpoint)
        pub.start()
        try:
            collector = Collector(pub.endpoint).start()
            assert pub.wait_for_subscriber(5.0)
            pub.publish(_prediction(7))
            assert collector.wait_for(lambda got: len(got) == 1, 5.0)
            assert collector.stop() == [{**_prediction(7), "seq": 0}]
        finally:
            pub.stop()


@pytest.mark.parametrize(
    ("endpoint", "match"),
    [
        ("tcp://127.0.0.1", "invalid endpoint"),
        ("127.0.0.1:5556", "invalid endpoint"),
        ("udp://127.0.0.1:5556", "unsupported transport"),
        ("tcp://127.0.0.1:99999", "invalid endpoint"),
    ],
)
def test_bad_endpoints_are_clear_errors(endpoint: str, match: str) -> None:
    with pytest.raises(StreamdError, match=match):
        Publisher(endpoint).start()
