"""MQTT sink against a real mosquitto broker: topics, bodies, Home Assistant discovery, last will,
store and forward (before the first connection, across a broker restart), what counts as delivered (a
frozen broker), and a pipeline that never waits for a broker that is gone."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import soundfile as sf
from support.mosquitto import Broker, Subscriber
from support.process import StreamdProcess, run_streamd

from streamd import messages
from streamd.config_sections import MqttSection
from streamd.errors import ConfigError
from streamd.mqtt_address import parse_url
from streamd.mqtt_discovery import discovery_payloads, slug, unique_slugs
from streamd.mqtt_sink import MqttSink

LABEL = "dog"


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "daemon.toml"
    path.write_text(
        f'[events]\nallow = ["{LABEL}"]\nthreshold = 0.0\nmin_hits = 1\n\n'
        '[mqtt]\nclient_id = "streamd-test"\nqos = 1\n'
    )
    return path


def test_replay_publishes_bodies_discovery_and_availability(
    broker: Broker, tmp_path: Path, clips: list[Path], small_checkpoint: Path, free_port: int
) -> None:
    sub = Subscriber(broker.port)
    try:
        result = run_streamd(
            *[
                "replay",
                clips[0],
                "--speed",
                "max",
                "--checkpoint",
                small_checkpoint,
                "--no-dashboard",
                "--config",
                _config(tmp_path),
                "--publish",
                f"tcp://127.0.0.1:{free_port}",
                "--mqtt",
                f"mqtt://127.0.0.1:{broker.port}/home/sound",
            ],
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert sub.wait_for("home/sound/availability", b"offline")
        time.sleep(0.3)
    finally:
        sub.close()
    stream = clips[0].stem.replace(".", "_")
    schema = messages.load_schema()
    bodies = {
        kind: [json.loads(p) for p in sub.on(f"home/sound/{stream}/{kind}")]
        for kind in messages.MESSAGE_TYPES
    }
    for kind, items in bodies.items():
        assert items, f"no {kind} messages on MQTT"
        for body in items:
            jsonschema.validate(body, schema)
            assert body["type"] == kind and body["stream"] == stream
    final = bodies["status"][-1]
    assert final["state"] == "finished"
    assert len(bodies["prediction"]) == final["counters"]["windows"]
    # the final status counts every message that went to the broker before it (its queue is flushed first),
    # each once (an event's ON/OFF state is part of it, not a message of its own)
    sent_before = sum(len(items) for items in bodies.values()) - 1
    assert final["counters"]["mqtt_delivered"] == sent_before
    assert final["counters"]["mqtt_undelivered"] == 0
    assert [e["state"] for e in bodies["event"]] == ["start", "end"]
    assert sub.on("home/sound/availability") == [b"online", b"offline"]
    assert sub.on(f"home/sound/{stream}/active/{LABEL}") == [b"OFF", b"ON", b"OFF"]  # OFF on connect
    node = "streamd_test"
    sensor = json.loads(sub.on(f"homeassistant/sensor/{node}/{slug(stream)}_top_label/config")[0])
    assert sensor["state_topic"] == f"home/sound/{stream}/prediction"
    assert sensor["availability_topic"] == "home/sound/availability"
    binary = json.loads(sub.on(f"homeassistant/binary_sensor/{node}/{slug(stream)}_{LABEL}/config")[0])
    assert binary["state_topic"] == f"home/sound/{stream}/active/{LABEL}"
    assert (binary["payload_on"], binary["payload_off"]) == ("ON", "OFF")
    assert binary["unique_id"] != sensor["unique_id"]


def test_last_will_when_the_daemon_is_killed(
    broker: Broker, tmp_path: Path, clips: list[Path], small_checkpoint: Path, free_port: int
) -> None:
    sub = Subscriber(broker.port)
    long = tmp_path / "long.wav"  # 15 s at speed 1: the daemon is still running when it is killed
    sf.write(
        long,
        np.concatenate([sf.read(c, dtype="float32")[0] for c in clips[:4]]),
        sf.info(clips[0]).samplerate,
    )
    proc = StreamdProcess(
        [
            "replay",
            long,
            "--speed",
            "1",
            "--checkpoint",
            small_checkpoint,
            "--no-dashboard",
            "--config",
            _config(tmp_path),
            "--publish",
            f"tcp://127.0.0.1:{free_port}",
            "--mqtt",
            f"mqtt://127.0.0.1:{broker.port}",
        ],
    ).start()
    try:
        assert sub.wait_for("streamd/long/prediction", timeout=60), proc.stderr_text()
        assert sub.on("streamd/availability") == [b"online"]
        proc.send_signal(signal.SIGKILL)
        assert sub.wait_for("streamd/availability", b"offline", timeout=10)
    finally:
        proc.kill()
        sub.close()


def _prediction(stream: str, t: float) -> dict:
    return messages.prediction(stream, t, t + 1.0, "m", [("dog", 0.9)], 1.0)


def _gate_connections(sink: MqttSink, linger_s: float = 0.0) -> threading.Event:
    """An event the sink's connections wait for (in paho's network thread) before the sink sees them up:
    set it once a test subscriber listens, so that what the sink sends at once is seen. ``linger_s``: how
    long paho's thread stays in the callback after the sink's own (before paho's own re-sending)."""
    gate = threading.Event()
    gate.set()
    on_connect = sink.client.on_connect

    def gated(*args: object) -> None:
        assert gate.wait(20), "the test never opened the gate"
        on_connect(*args)
        time.sleep(linger_s)

    sink.client.on_connect = gated
    return gate


def _times(sub: Subscriber, count: int, timeout: float = 10.0) -> list[float]:
    """The ``t_start`` of the predictions ``sub`` got on stream s1, once it has ``count`` (or on timeout)."""
    deadline = time.monotonic() + timeout
    while len(sub.on("streamd/s1/prediction")) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # and no more
    return [json.loads(p)["t_start"] for p in sub.on("streamd/s1/prediction")]


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_messages_before_the_first_connection_are_sent_once_it_is_up(broker: Broker, qos: int) -> None:
    """connect_async is asynchronous: what is sent before the connection is up waits in the queue."""
    cfg = MqttSection(url=f"mqtt://127.0.0.1:{broker.port}", discovery=False, qos=qos)
    sink = MqttSink(cfg, ["s1"], [])
    gate = _gate_connections(sink)
    gate.clear()
    sub = Subscriber(broker.port)
    sink.start()
    try:
        for i in range(50):
            sink(_prediction("s1", float(i)))
        assert not sink.wait_connected(0.3)
        gate.set()
        assert sink.flush(10.0)
        assert sink.counters_for("s1") == {"mqtt_delivered": 50, "mqtt_undelivered": 0}
        assert _times(sub, 50) == [float(i) for i in range(50)]
    finally:
        sink.stop()
        sub.close()


def test_an_outage_keeps_the_newest_queue_size_messages_and_sends_them_on_reconnecting(
    broker: Broker,
) -> None:
    """5000 messages while the broker is gone: the queue (1000) keeps the newest, the 4000 oldest are
    counted undelivered at once, the caller never waits; after the broker is back the kept ones arrive in
    order, newest last, and are counted delivered."""
    cfg = MqttSection(url=f"mqtt://127.0.0.1:{broker.port}", reconnect_max_s=1.0, discovery=False)
    assert cfg.queue_size == 1000
    sink = MqttSink(cfg, ["s1"], [])
    gate = _gate_connections(sink)
    sink.start()
    sub = Subscriber(broker.port)
    try:
        assert sink.wait_connected(10)
        sink(_prediction("s1", 9999.0))
        assert sink.flush(10.0)
        assert sub.wait_for("streamd/s1/prediction")
        sub.close()
        broker.stop()
        deadline = time.monotonic() + 10
        while sink._connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        gate.clear()  # the next connection waits until a subscriber listens again
        started = time.perf_counter()
        for i in range(5000):  # far more than the queue holds: the caller never waits
            sink(_prediction("s1", float(i)))
        assert time.perf_counter() - started < 2.0
        deadline = time.monotonic() + 5  # the sink thread may hold the outage's first one a moment (put back)
        while sink.counters_for("s1")["mqtt_undelivered"] < 4000 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sink.counters_for("s1") == {"mqtt_delivered": 1, "mqtt_undelivered": 4000}
        broker.start()
        sub = Subscriber(broker.port)
        gate.set()
        assert sink.wait_connected(15), "did not reconnect"
        assert sink.flush(20.0)
        assert sink.counters_for("s1") == {"mqtt_delivered": 1001, "mqtt_undelivered": 4000}
        assert _times(sub, 1000) == [float(i) for i in range(4000, 5000)]
    finally:
        sink.stop()
        sub.close()


def test_a_frozen_broker_gets_nothing_counted_delivered_that_it_did_not_acknowledge(broker: Broker) -> None:
    """QoS 1 (the default): messages written into the socket of a broker frozen with SIGSTOP are not
    delivered until it acknowledges them; those still unacknowledged when the sink stops are undelivered.
    Every message sent is counted once, and every one counted delivered reached the subscriber."""
    assert broker.proc is not None
    pid = broker.proc.pid
    sink = MqttSink(MqttSection(url=f"mqtt://127.0.0.1:{broker.port}", discovery=False), ["s1"], [])
    assert sink.cfg.qos == 1
    sub = Subscriber(broker.port)
    sink.start()
    stopped = False
    try:
        assert sink.wait_connected(10)
        for i in range(5):
            sink(_prediction("s1", float(i)))
        assert sink.flush(10.0)
        os.kill(pid, signal.SIGSTOP)
        for i in range(5, 25):
            sink(_prediction("s1", float(i)))
        assert not sink.flush(1.0)  # written to the connection, not acknowledged
        assert sink.counters_for("s1") == {"mqtt_delivered": 5, "mqtt_undelivered": 0}
        os.kill(pid, signal.SIGCONT)
        assert sink.flush(10.0)
        assert sink.counters_for("s1") == {"mqtt_delivered": 25, "mqtt_undelivered": 0}
        assert _times(sub, 25) == [float(i) for i in range(25)]
        os.kill(pid, signal.SIGSTOP)
        for i in range(25, 45):
            sink(_prediction("s1", float(i)))
        started = time.monotonic()
        sink.stop(timeout=1.0)
        stopped = True
        assert time.monotonic() - started < 5.0
        broker.proc.kill()  # the frozen broker dies with what it was sent
        broker.proc.wait(10)
        broker.proc = None
        assert sink.counters_for("s1") == {"mqtt_delivered": 25, "mqtt_undelivered": 20}
        assert _times(sub, 26, timeout=0.5) == [float(i) for i in range(25)]
    finally:
        if broker.proc is not None:
            os.kill(pid, signal.SIGCONT)
        if not stopped:
            sink.stop()
        sub.close()


def test_messages_in_flight_when_the_broker_dies_are_sent_again_and_states_stay_in_order(
    broker: Broker,
) -> None:
    """QoS 1: what a frozen broker never acknowledged before it was killed is sent again after it restarts
    and counted delivered then, once; an event that ended meanwhile leaves its binary sensor OFF (its ON,
    sent again by paho on reconnecting, goes before the newer OFF)."""
    assert broker.proc is not None
    cfg = MqttSection(url=f"mqtt://127.0.0.1:{broker.port}", reconnect_max_s=1.0)
    sink = MqttSink(cfg, ["s1"], ["dog"])
    gate = _gate_connections(sink, linger_s=0.3)  # room for newer messages to overtake paho's re-sending
    sink.start()
    sub = None
    try:
        assert sink.wait_connected(10)
        os.kill(broker.proc.pid, signal.SIGSTOP)
        sink(messages.event("s1", "dog", "start", 0.0, 1.0, 0.9))  # its ON state and its body: one message
        for i in range(3):
            sink(_prediction("s1", float(i)))
        assert not sink.flush(0.5)
        broker.proc.kill()
        broker.proc.wait(10)
        broker.proc = None
        deadline = time.monotonic() + 10
        while sink._connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        gate.clear()
        sink(messages.event("s1", "dog", "end", 0.0, 2.0, 0.9))  # its OFF state and its body: one message
        broker.start()
        sub = Subscriber(broker.port)
        gate.set()
        assert sink.flush(20.0)
        assert sink.counters_for("s1") == {"mqtt_delivered": 5, "mqtt_undelivered": 0}  # an event counts once
        assert _times(sub, 3) == [0.0, 1.0, 2.0]
        assert [json.loads(b)["state"] for b in sub.on("streamd/s1/event")] == ["start", "end"]
        assert sub.on("streamd/s1/active/dog")[-1] == b"OFF"
        sub.close()
        sub = Subscriber(broker.port)  # what is retained
        assert sub.wait_for("streamd/s1/active/dog")
        assert sub.on("streamd/s1/active/dog") == [b"OFF"]
    finally:
        if broker.proc is not None:
            os.kill(broker.proc.pid, signal.SIGCONT)  # for the fixture to stop it
        sink.stop()
        if sub is not None:
            sub.close()


def test_flush_counts_every_queued_message_before_it_returns(broker: Broker) -> None:
    sink = MqttSink(MqttSection(url=f"mqtt://127.0.0.1:{broker.port}", discovery=False), ["s1"], [])
    sink.start()
    try:
        assert sink.wait_connected(10)
        for i in range(500):  # within the sink's queue (1000)
            sink(_prediction("s1", float(i)))
        assert sink.flush(10.0)
        assert sink.counters_for("s1") == {"mqtt_delivered": 500, "mqtt_undelivered": 0}  # read at once
    finally:
        sink.stop()


def test_bad_urls_are_config_errors() -> None:
    for bad, why in (
        ("http://x", "expected mqtt://"),
        ("mqtt://", "expected mqtt://"),
        ("mqtt://host:99999", "out of range"),
        ("mqtt://127.0.0.1:0", "port 0 in"),
        ("mqtt://[::1", "Invalid IPv6 URL"),
        ("mqtt://user:pw@host", "not in the URL"),
        ("mqtt://host/a/+/b", "not a topic prefix"),
        ("mqtt://host/#", "not a topic prefix"),
        ("mqtt://127.0.0.1:1883/$SYS", "begins with '\\$': such topics are the broker's own"),
    ):
        with pytest.raises(ConfigError, match=why):
            parse_url(bad)
    assert parse_url("mqtts://broker/a/b").port == 8883
    assert parse_url("mqtt://h:1884/a/b/").prefix == "a/b"
    assert parse_url("mqtt://[::1]:1884").host == "::1"


@pytest.mark.parametrize(
    ("section", "why"),
    [
        (MqttSection(url="mqtt://127.0.0.1:1", prefix="a/+"), "mqtt.prefix: 'a/\\+' is not a topic prefix"),
        (MqttSection(url="mqtt://127.0.0.1:1", discovery_prefix="#"), "mqtt.discovery_prefix"),
        (
            MqttSection(url="mqtt://127.0.0.1:1", tls=True, ca_file="/nonexistent.pem"),
            "mqtt.ca_file /nonexistent.pem",
        ),
        (MqttSection(url="mqtt://127.0.0.1:1", prefix="$foo"), "mqtt.prefix: '\\$foo' begins with '\\$'"),
        (MqttSection(url="mqtt://127.0.0.1:1", discovery_prefix="/$SYS/ha"), "mqtt.discovery_prefix"),
        (MqttSection(url="mqtt://127.0.0.1:1", password="pw"), "mqtt.password is set without mqtt.username"),
        (
            MqttSection(url="mqtt://127.0.0.1:1", prefix=""),
            "mqtt.prefix: empty, so topics would begin with '/'",
        ),
        (MqttSection(url="mqtt://127.0.0.1:1", discovery_prefix="/"), "mqtt.discovery_prefix: empty"),
        (MqttSection(url="mqtt://127.0.0.1:1", client_id="x" * 70000), "mqtt.client_id: 70000 bytes"),
        (
            MqttSection(url="mqtt://127.0.0.1:1", prefix="p" * 40000),
            "mqtt.prefix: 40000 bytes long; at most 32767",
        ),
    ],
)
def test_bad_mqtt_settings_are_config_errors(section: MqttSection, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        MqttSink(section, ["s1"], [])


def test_a_broker_that_cannot_be_reached_is_named_with_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    """Messages wait for a broker that never comes; the queue (here 2) drops its oldest, counted and
    warned about once with the reason, and the stop ends at once counting what was still queued."""
    from support.fixtures import free_tcp_port

    port = free_tcp_port()
    cfg = MqttSection(url=f"mqtt://127.0.0.1:{port}", discovery=False, queue_size=2)
    sink = MqttSink(cfg, ["s1"], [])
    sink.start()
    try:
        deadline = time.monotonic() + 10
        while sink.problem == "not connected yet" and time.monotonic() < deadline:
            time.sleep(0.02)
        for i in range(3):
            sink(_prediction("s1", float(i)))
        assert sink.counters_for("s1") == {"mqtt_delivered": 0, "mqtt_undelivered": 1}  # the oldest
        assert f"the broker at 127.0.0.1:{port} is not connected; the connection failed" in caplog.text
    finally:
        started = time.monotonic()
        sink.stop()
    assert time.monotonic() - started < 2.0  # paho's reconnect wait looks at its stop every second
    assert sink.counters_for("s1") == {"mqtt_delivered": 0, "mqtt_undelivered": 3}
    assert sink.flush(0.1)
    assert caplog.text.count("further losses are only counted") == 1


def test_a_broker_down_at_start_then_up_then_lost_is_said_at_each_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker that was not there (a wrong port) or went away mid-run was silent until messages were
    written off or the run ended: each change of the connection is now said once, as it happens."""
    caplog.set_level(logging.WARNING, logger="streamd.mqtt_sink")
    broker = Broker(tmp_path)  # its port, nothing listening there yet
    sink = MqttSink(MqttSection(url=f"mqtt://127.0.0.1:{broker.port}", discovery=False), ["s1"], [])
    where = f"MQTT broker 127.0.0.1:{broker.port}"

    def said(text: str, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while text not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        return text in caplog.text

    sink.start()
    try:
        assert said(f"{where}: the connection failed (nothing listening there")
        broker.start()
        assert said(f"{where}: connected again")
        broker.stop()
        assert said(f"{where}: disconnected (")
        assert caplog.text.count("the connection failed") == 1  # once per outage, not once per retry
    finally:
        sink.stop()
        broker.stop()
    assert caplog.text.count("disconnected (") == 1  # the stop's own disconnect is not a loss


def test_a_broker_that_refuses_the_credentials_is_said_once_whatever_the_retries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker refusing a wrong password refuses every reconnect alike: one warning, the reason kept."""
    broker = Broker(tmp_path, users={"streamd": "right"})
    broker.start()
    cfg = MqttSection(
        url=f"mqtt://127.0.0.1:{broker.port}", discovery=False, username="streamd", password="wrong"
    )
    sink = MqttSink(cfg, ["s1"], [])
    answers: list[object] = []  # every connection attempt the broker answered
    on_connect = sink.client.on_connect
    sink.client.on_connect = lambda *args: (answers.append(args[3]), on_connect(*args))
    sink.start()
    try:
        deadline = time.monotonic() + 15  # paho retries after 1 s, then 2 s
        while len(answers) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(answers) >= 2, answers
        assert sink.problem.startswith("it refused the connection: Not authorized"), sink.problem
        assert caplog.text.count("refused the connection") == 1, caplog.text
    finally:
        sink.stop()
        broker.stop()


def test_discovery_one_sensor_per_stream_one_binary_sensor_per_label() -> None:
    out = discovery_payloads("p", "homeassistant", "n", ["s1", "s2"], ["dog", "Crying baby"])
    assert sum("/sensor/" in t for t in out) == 2
    assert sum("/binary_sensor/" in t for t in out) == 4
    assert "homeassistant/binary_sensor/n/s2_crying_baby/config" in out
    alike = discovery_payloads("p", "homeassistant", "n", ["x", "X", "a-b", "a_b"], ["dog"])
    assert sum("/sensor/" in t for t in alike) == 4 and sum("/binary_sensor/" in t for t in alike) == 4
    states = {payload["state_topic"] for payload in alike.values()}
    assert {"p/x/prediction", "p/X/prediction", "p/a-b/active/dog", "p/a_b/active/dog"} <= states
    assert len({payload["unique_id"] for payload in alike.values()}) == 8
    assert unique_slugs(["dog", "cat"])["dog"] == unique_slugs(["dog", "cat", "Dog"])["dog"] == "dog"
    cased = discovery_payloads("p", "homeassistant", "n", ["s"], ["Dog", "dog", "crying-baby", "crying_baby"])
    assert len({p["state_topic"] for t, p in cased.items() if "/binary_sensor/" in t}) == 4
    assert len({p["unique_id"] for p in cased.values()}) == 5


def test_the_top_label_sensor_is_announced_only_while_predictions_are_published(broker: Broker) -> None:
    """Its state topic is the predictions': without them (``types`` leaves them out) it is not announced,
    and the one an earlier run announced (retained) is removed; the binary sensors stay (events drive
    them with discovery on)."""
    url = f"mqtt://127.0.0.1:{broker.port}"
    earlier = MqttSink(MqttSection(url=url), ["s1"], ["dog"])
    sensor = f"homeassistant/sensor/{earlier.node}/s1_top_label/config"
    binary = f"homeassistant/binary_sensor/{earlier.node}/s1_dog/config"
    earlier.start()
    sub = Subscriber(broker.port)
    try:
        assert earlier.wait_connected(10) and sub.wait_for(sensor) and sub.wait_for(binary)
    finally:
        earlier.stop()
    sink = MqttSink(MqttSection(url=url, types=["status"]), ["s1"], ["dog"])
    sink.start()
    try:
        assert sink.wait_connected(10)
        assert sub.wait_for(sensor, b"")  # the earlier run's config removed
        sink(messages.event("s1", "dog", "start", 0.0, 1.0, 0.9))
        sink(_prediction("s1", 0.0))  # not in types: not sent
        assert sink.flush(10.0)
        assert sub.wait_for("streamd/s1/active/dog", b"ON")
        assert sub.on("streamd/s1/prediction") == [] and sub.on("streamd/s1/event") == []
        sub.close()  # (one test subscriber at a time: they share a client id)
        late = Subscriber(broker.port)  # what is retained now
        try:
            assert late.wait_for(binary) and late.wait_for("streamd/s1/active/dog", b"ON")
            time.sleep(0.3)
            assert late.on(sensor) == []
        finally:
            late.close()
    finally:
        sink.stop()
        sub.close()


def test_labels_differing_only_in_case_keep_binary_sensors_of_their_own(broker: Broker) -> None:
    """A model with labels ``Dog`` and ``dog``: an event of one turns on its own binary sensor only."""
    sink = MqttSink(MqttSection(url=f"mqtt://127.0.0.1:{broker.port}"), ["s"], ["Dog", "dog"])
    topics = {label: f"streamd/s/active/{sink.label_ids[label]}" for label in ("Dog", "dog")}
    assert len(set(topics.values())) == 2
    sink.start()
    sub = Subscriber(broker.port)
    try:
        assert sink.wait_connected(10)
        sink(messages.event("s", "Dog", "start", 0.0, 1.0, 0.9))
        assert sink.flush(10.0)
        assert sub.wait_for(topics["Dog"], b"ON")
        time.sleep(0.3)
        assert b"ON" not in sub.on(topics["dog"])
    finally:
        sink.stop()
        sub.close()


def test_binary_sensors_start_off_and_two_daemons_of_a_host_keep_their_connections(broker: Broker) -> None:
    """A daemon that died with an event open left its binary sensor ON (retained): the next one sets every
    binary sensor to what is true at connection (nothing open: OFF). Two sinks with the default client id
    stay connected side by side (the broker lets one connection per id)."""
    import paho.mqtt.client as mqtt

    stale = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="stale-daemon")
    stale.connect("127.0.0.1", broker.port)
    stale.loop_start()
    stale.publish("streamd/s1/active/dog", "ON", qos=1, retain=True).wait_for_publish(5)
    stale.loop_stop()
    stale.disconnect()
    cfg = MqttSection(url=f"mqtt://127.0.0.1:{broker.port}", reconnect_max_s=1.0)
    sinks = [MqttSink(cfg, ["s1"], ["dog"]), MqttSink(cfg, ["s2"], ["dog"])]
    assert sinks[0].client_id != sinks[1].client_id
    for sink in sinks:
        sink.start()
    sub = None
    try:
        assert all(sink.wait_connected(10) for sink in sinks)
        sub = Subscriber(broker.port)  # retained states arrive on subscription
        assert sub.wait_for("streamd/s1/active/dog")
        assert sub.on("streamd/s1/active/dog")[-1] == b"OFF"
        for i in range(20):
            for sink, stream in zip(sinks, ("s1", "s2"), strict=True):
                sink(_prediction(stream, float(i)))
            time.sleep(0.02)
        assert all(sink.flush(10.0) for sink in sinks)
        time.sleep(0.5)
        assert all(sink._connected.is_set() for sink in sinks)
        assert [
            sink.counters_for(s)["mqtt_delivered"] for sink, s in zip(sinks, ("s1", "s2"), strict=True)
        ] == [20, 20]
        assert len(sub.on("streamd/s1/prediction")) == len(sub.on("streamd/s2/prediction")) == 20
    finally:
        for sink in sinks:
            sink.stop()
        if sub is not None:
            sub.close()


def test_every_binary_sensor_state_is_announced_however_many(broker: Broker) -> None:
    """10 streams x 60 labels: 1201 retained messages at once on connecting; paho's queue holds them all."""
    streams, labels = [f"mic{i}" for i in range(10)], [f"label{j}" for j in range(60)]
    sink = MqttSink(MqttSection(url=f"mqtt://127.0.0.1:{broker.port}"), streams, labels)
    assert len(sink.client_id) <= 23  # what every MQTT 3.1.1 broker must accept
    sink.start()
    sub = None
    try:
        assert sink.wait_connected(10)
        time.sleep(1.0)
        sub = Subscriber(broker.port)  # the retained states arrive on subscription
        deadline = time.monotonic() + 15
        topics: set[str] = set()
        while time.monotonic() < deadline:
            topics = {t for t, _, _ in list(sub.received) if "/active/" in t}
            if len(topics) == len(streams) * len(labels):
                break
            time.sleep(0.1)
        assert len(topics) == len(streams) * len(labels)
    finally:
        sink.stop()
        if sub is not None:
            sub.close()
