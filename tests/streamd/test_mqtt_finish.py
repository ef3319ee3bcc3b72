"""MQTT at the end of a run and at the edges of its queue: the final status counts every message before it
(a broker down at the end), a late acknowledgement never counts a message twice, a dropped event still sets
its binary sensor, a stop racing the sink's thread, a put-back into a full queue, and the counting unit."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from support.fixtures import free_tcp_port
from support.mosquitto import Broker, Subscriber
from support.process import run_streamd

from streamd import messages
from streamd.config_sections import MqttSection
from streamd.mqtt_delivery import Deliveries, Outbox
from streamd.mqtt_sink import MqttSink


def _prediction(stream: str, t: float) -> dict:
    return messages.prediction(stream, t, t + 1.0, "m", [("dog", 0.9)], 1.0)


def _event(state: str, t: float, label: str = "dog") -> dict:
    return messages.event("s1", label, state, 0.0, t, 0.9)


def _until(condition: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_the_final_status_counts_every_message_a_broker_down_at_the_end_left_undelivered(
    tmp_path: Path, clips: list[Path], small_checkpoint: Path, free_port: int
) -> None:
    """Nothing listens at the broker's address: every message waits in the queue; once the finish-time
    flush runs out of time they are counted undelivered, before the final status is built."""
    config = tmp_path / "daemon.toml"
    config.write_text('[events]\nallow = ["dog"]\nthreshold = 0.0\nmin_hits = 1\n')
    result = run_streamd(
        *["replay", clips[0], "--speed", "max", "--checkpoint", small_checkpoint, "--no-dashboard"],
        *["--config", config, "--publish", f"tcp://127.0.0.1:{free_port}", "--json"],
        *["--mqtt", f"mqtt://127.0.0.1:{free_tcp_port()}"],
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    final = printed[-1]
    assert final["type"] == "status" and final["state"] == "finished"
    before = printed[:-1]  # what the sink accepted before the final status (all types, events of "dog")
    assert {m["type"] for m in before} == {"prediction", "event", "status"}
    assert final["counters"]["mqtt_delivered"] == 0
    assert final["counters"]["mqtt_undelivered"] == len(before)
    assert "is not connected; the connection failed" in result.stderr


def test_finish_writes_off_what_a_frozen_broker_left_and_a_late_acknowledgement_does_not_count_twice(
    broker: Broker,
) -> None:
    """The finish-time flush runs out of time (broker frozen): the unacknowledged and the queued are counted
    undelivered at once; the broker acknowledging them later changes nothing (undelivered wins: the final
    status counted them and counters only grow), and the sink still delivers what comes after."""
    assert broker.proc is not None
    pid = broker.proc.pid
    sink = MqttSink(MqttSection(url=f"mqtt://127.0.0.1:{broker.port}", discovery=False), ["s1"], [])
    sink.start()
    try:
        assert sink.wait_connected(10)
        sink(_prediction("s1", 0.0))
        assert sink.flush(10.0)
        os.kill(pid, signal.SIGSTOP)
        for i in range(1, 11):
            sink(_prediction("s1", float(i)))
        assert not sink.finish(0.5)
        assert sink.counters_for("s1") == {"mqtt_delivered": 1, "mqtt_undelivered": 10}
        os.kill(pid, signal.SIGCONT)
        sink(_prediction("s1", 99.0))  # the final status, say
        assert sink.flush(10.0)
        assert sink.counters_for("s1") == {"mqtt_delivered": 2, "mqtt_undelivered": 10}
    finally:
        os.kill(pid, signal.SIGCONT)
        sink.stop()
    assert sink.counters_for("s1") == {"mqtt_delivered": 2, "mqtt_undelivered": 10}


def test_an_event_end_dropped_from_a_full_queue_still_turns_its_binary_sensor_off(broker: Broker) -> None:
    """The event's start is delivered (ON, retained); during an outage its end and many predictions come
    with a queue of 10: the end is dropped, yet the next connection's snapshot sets the sensor OFF."""
    cfg = MqttSection(url=f"mqtt://127.0.0.1:{broker.port}", reconnect_max_s=1.0, queue_size=10)
    sink = MqttSink(cfg, ["s1"], ["dog"])
    sink.start()
    sub = None
    try:
        assert sink.wait_connected(10)
        sink(_event("start", 1.0))
        assert sink.flush(10.0)
        broker.stop()
        assert _until(lambda: not sink._connected.is_set())
        sink(_event("end", 2.0))
        for i in range(20):
            sink(_prediction("s1", float(i)))
        # the end and the 10 oldest predictions (the thread may hold the end a moment, then put it back)
        assert _until(lambda: sink.counters_for("s1")["mqtt_undelivered"] == 11)
        assert sink.counters_for("s1") == {"mqtt_delivered": 1, "mqtt_undelivered": 11}
        broker.start()
        assert sink.wait_connected(15), "did not reconnect"
        assert sink.flush(10.0)
        assert sink.counters_for("s1") == {"mqtt_delivered": 11, "mqtt_undelivered": 11}
        sub = Subscriber(broker.port)  # what is retained now
        assert sub.wait_for("streamd/s1/active/dog")
        time.sleep(0.3)
        assert sub.on("streamd/s1/active/dog") == [b"OFF"]
    finally:
        sink.stop()
        if sub is not None:
            sub.close()


def test_a_stop_racing_the_sink_thread_counts_its_message_once_and_never_sends_it(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """The thread is held between its last check and publish() until the stop is over: the stop warns
    that it did not end, and the message, once the thread goes on, is counted undelivered (for the reason
    said before the sink disconnected itself), never published nor left unconfirmed."""
    sink = MqttSink(MqttSection(url=f"mqtt://127.0.0.1:{broker.port}", discovery=False), ["s1"], [])
    checked, release = threading.Event(), threading.Event()
    real = sink._wait_sendable

    def held(number: int | None = None) -> bool:
        ok = real(number)
        if number is not None and ok and not checked.is_set():  # the check just before publish()
            checked.set()
            release.wait(30)
        return ok

    sink._wait_sendable = held  # type: ignore[method-assign]
    sub = Subscriber(broker.port)
    sink.start()
    try:
        assert sink.wait_connected(10)
        sink(_prediction("s1", 0.0))
        assert checked.wait(10)
        with caplog.at_level(logging.WARNING, logger="streamd.mqtt_sink"):
            sink.stop(timeout=0.2)
            assert sink._thread is not None and sink._thread.is_alive()
            assert "MQTT sink thread did not end within 1 s" in caplog.text
            release.set()
            sink._thread.join(10)
        assert not sink._thread.is_alive()
        assert sink.counters_for("s1") == {"mqtt_delivered": 0, "mqtt_undelivered": 1}
        assert not sink.deliveries.outstanding()
        assert "when the sink stopped" in caplog.text and "Normal disconnection" not in caplog.text
        time.sleep(0.3)
        assert sub.on("streamd/s1/prediction") == []
    finally:
        release.set()
        sink.stop()
        sub.close()


def test_a_message_put_back_into_a_full_queue_is_dropped_as_the_oldest() -> None:
    """The thread took a message as the connection went; the queue filled before it could put it back:
    the message in hand (older than all queued) is counted lost and the queue keeps the newest. Put back
    after a write-off, a message is counted at once."""
    deliveries = Deliveries(["s1"])
    outbox = Outbox(MqttSection(url="mqtt://127.0.0.1:1", queue_size=3), [], deliveries)
    accepted = [outbox.accept(_prediction("s1", float(i))) for i in range(5)]
    assert all(len(one) == 1 for one in accepted)
    items = [one[0] for one in accepted]
    outbox.put(items[0], "full")
    taken = outbox.queue.get_nowait()
    for item in items[1:4]:
        outbox.put(item, "full")
    assert not outbox.put_back(taken, "full")
    outbox.queue.task_done()
    assert [m["t_start"] for _, m in list(outbox.queue.queue)] == [1.0, 2.0, 3.0]
    assert deliveries.counters("s1") == {"mqtt_delivered": 0, "mqtt_undelivered": 1}
    taken = outbox.queue.get_nowait()
    outbox.write_off("stopped", closed=True)
    assert not outbox.put_back(taken, "full")
    assert outbox.queue.qsize() == 0
    assert deliveries.counters("s1") == {"mqtt_delivered": 0, "mqtt_undelivered": 4}
    outbox.put(items[4], "full")
    assert deliveries.counters("s1") == {"mqtt_delivered": 0, "mqtt_undelivered": 5}


def test_a_message_counts_once_and_what_would_never_be_sent_takes_no_room() -> None:
    """Events of labels without a binary sensor when "event" is not in types, and predictions within
    prediction_interval_s, are never queued; an event of a binary sensor is one message (its state and,
    in types, its body), counted once when lost."""
    url = f"mqtt://127.0.0.1:{free_tcp_port()}"  # nothing there: what is accepted waits, then is lost
    cfg = MqttSection(url=url, types=["prediction", "status"], prediction_interval_s=3600, queue_size=2)
    sink = MqttSink(cfg, ["s1"], ["dog"])
    sink.start()
    try:
        sink(_event("start", 1.0, label="cat"))  # no binary sensor, not in types: never sent
        for i in range(5):
            sink(_prediction("s1", float(i)))  # the first one only: the rest within the interval
        sink(_event("start", 2.0))  # drives the binary sensor
        assert sink._queue.qsize() == 2
        assert sink.counters_for("s1") == {"mqtt_delivered": 0, "mqtt_undelivered": 0}
    finally:
        sink.stop()
    assert sink.counters_for("s1") == {"mqtt_delivered": 0, "mqtt_undelivered": 2}
    both = MqttSink(MqttSection(url=url, queue_size=1), ["s1"], ["dog"])  # "event" in types too
    both(_event("start", 1.0))
    both(_event("end", 2.0))  # drops the start: one message lost, not its state and body apart
    assert both.counters_for("s1") == {"mqtt_delivered": 0, "mqtt_undelivered": 1}
    assert both.outbox.active == {("s1", "dog")}  # the dropped start still set its sensor
    both.stop()
    assert both.counters_for("s1") == {"mqtt_delivered": 0, "mqtt_undelivered": 2}
    assert both.outbox.active == set()  # and so did its end, lost at the stop
