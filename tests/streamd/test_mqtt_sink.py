"""MQTT sink against a real mosquitto broker: topics, bodies, Home Assistant discovery, last will,
reconnect after the broker restarts, and a pipeline that never waits for a broker that is gone."""

from __future__ import annotations

import json
import signal
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


@pytest.fixture()
def broker(tmp_path: Path):
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


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
    # the final status counts every message that went to the broker before it (its queue is flushed first)
    sent_before = sum(len(items) for items in bodies.values()) - 1 + 2  # + the ON/OFF states
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


def test_reconnects_after_the_broker_restarts_and_counts_losses(broker: Broker) -> None:
    cfg = MqttSection(url=f"mqtt://127.0.0.1:{broker.port}", reconnect_max_s=1.0, discovery=False)
    sink = MqttSink(cfg, ["s1"], [])
    sink.start()
    sub = Subscriber(broker.port)
    try:
        assert sink.wait_connected(10)
        sink(_prediction("s1", 0.0))
        assert sub.wait_for("streamd/s1/prediction")
        sub.close()
        broker.stop()
        deadline = time.monotonic() + 10
        while sink._connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.perf_counter()
        for i in range(5000):  # far more than the queue holds: the caller never waits
            sink(_prediction("s1", float(i)))
        assert time.perf_counter() - started < 2.0
        deadline = time.monotonic() + 10
        while sink.undelivered < 5000 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sink.undelivered == 5000
        assert sink.counters_for("s1") == {"mqtt_delivered": 1, "mqtt_undelivered": 5000}
        broker.start()
        assert sink.wait_connected(15), "did not reconnect"
        sub = Subscriber(broker.port)
        sink(_prediction("s1", 9999.0))
        assert sub.wait_for("streamd/s1/prediction")
        body = json.loads(sub.on("streamd/s1/prediction")[-1])
        assert body["t_start"] == 9999.0
        assert sink.delivered == 2
    finally:
        sink.stop()
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
    ],
)
def test_bad_mqtt_settings_are_config_errors(section: MqttSection, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        MqttSink(section, ["s1"], [])


def test_a_broker_that_cannot_be_reached_is_named_with_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    from support.fixtures import free_tcp_port

    port = free_tcp_port()
    sink = MqttSink(MqttSection(url=f"mqtt://127.0.0.1:{port}", discovery=False), ["s1"], [])
    sink.start()
    try:
        deadline = time.monotonic() + 10
        while sink.problem == "not connected yet" and time.monotonic() < deadline:
            time.sleep(0.02)
        sink(_prediction("s1", 0.0))
        while sink.undelivered < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        sink.stop()
    assert sink.undelivered == 1
    assert f"the broker at 127.0.0.1:{port} is not connected; the connection failed" in caplog.text


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
