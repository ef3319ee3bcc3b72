"""MQTT sink (``--mqtt mqtt://HOST:PORT[/PREFIX]``, ``[mqtt]``), with Home Assistant discovery.

Every message goes out with the same JSON body as on ZeroMQ, on ``PREFIX/<stream>/<type>``. The client
announces ``online`` on ``PREFIX/availability`` (retained) and leaves ``offline`` as its last will. With
discovery on it publishes, retained, a sensor per stream (state: the top label; attribute: its score) and a
binary sensor per configured label and stream, whose state topic ``PREFIX/<stream>/active/<label>`` gets
``ON`` at the event's start and ``OFF`` at its end.

The sink never stalls the pipeline: the publisher thread only puts a message on a bounded queue (full:
dropped and counted); this module's own thread hands it to paho, whose network thread reconnects with a
doubling backoff. What could not be handed over (not connected, paho's queue full) is counted as
``undelivered``. paho is imported only when MQTT is on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections import Counter
from typing import Any

from streamd import messages
from streamd.config_sections import MqttSection
from streamd.errors import ConfigError
from streamd.handled_queue import wait_until_handled
from streamd.mqtt_address import check_topic_prefix, parse_url
from streamd.mqtt_discovery import active_topic, discovery_payloads, slug, unique_slugs
from streamd.net_address import host_port

log = logging.getLogger(__name__)

PAHO_QUEUE = 1000  # messages paho may hold (QoS > 0) while disconnected
KEEPALIVE_S = 30


class MqttSink:
    """A publisher sink that forwards messages to an MQTT broker from its own thread."""

    def __init__(self, cfg: MqttSection, streams: list[str], labels: list[str]) -> None:
        import paho.mqtt.client as mqtt

        self._mqtt = mqtt
        address = parse_url(cfg.url)
        self.cfg = cfg
        self.address = address
        if address.prefix is None:
            check_topic_prefix("mqtt.prefix", cfg.prefix)
        check_topic_prefix("mqtt.discovery_prefix", cfg.discovery_prefix)
        self.prefix = (address.prefix or cfg.prefix).strip("/")
        self.node = slug(cfg.client_id or f"streamd-{socket.gethostname()}")
        # the broker lets one connection per client id: two daemons of a host must not share the default
        # (at most 23 characters, the length every MQTT 3.1.1 broker must accept)
        self.client_id = cfg.client_id or f"streamd_{os.getpid()}_{secrets.token_hex(3)}"[:23]
        self._active: set[tuple[str, str]] = set()  # (stream, label) of the open events of binary sensors
        self._active_lock = threading.Lock()
        self.streams = streams
        self.labels = labels
        self.label_ids = unique_slugs(labels)  # labels differing only in case keep topics of their own
        self.types = set(cfg.types)
        unknown = self.types - set(messages.MESSAGE_TYPES)
        if unknown:
            raise ConfigError(f"mqtt.types: unknown message types {sorted(unknown)}")
        self.availability = f"{self.prefix}/availability"
        self.delivered = 0
        self.undelivered = 0
        self._by_stream: dict[str, Counter[str]] = {s: Counter() for s in streams}
        self._warned = False
        self.problem = "not connected yet"  # why the broker is not connected (paho callbacks set it)
        self._last_prediction: dict[str, float] = {}
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=cfg.queue_size)
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self.client = self._client()

    def _client(self) -> Any:
        mqtt = self._mqtt
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
        if self.cfg.username:
            client.username_pw_set(self.cfg.username, self.cfg.password or None)
        if self.cfg.tls or self.address.tls:
            try:
                client.tls_set(ca_certs=self.cfg.ca_file or None)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                what = f"mqtt.ca_file {self.cfg.ca_file}" if self.cfg.ca_file else "mqtt.tls"
                raise ConfigError(f"{what}: {getattr(exc, 'strerror', None) or exc}") from None
        client.will_set(self.availability, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=max(1, round(self.cfg.reconnect_max_s)))
        # what a connection announces at once (availability, discovery, binary sensor states) on top
        announced = 1 + len(self.streams) * (1 + 2 * len(self.labels)) if self.cfg.discovery else 1
        client.max_queued_messages_set(PAHO_QUEUE + announced)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        return client

    # -- paho callbacks (its network thread) -----------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self.problem = f"it refused the connection: {reason}"
            log.warning("MQTT broker %s refused the connection: %s", self.address.host, reason)
            return
        self.problem = "not connected yet"
        sent = [client.publish(self.availability, "online", qos=1, retain=True)]
        # under the lock until connected: an event's state is either in this snapshot or published after
        with self._active_lock:
            if self.cfg.discovery:
                for topic, payload in discovery_payloads(
                    self.prefix, self.cfg.discovery_prefix, self.node, self.streams, self.labels
                ).items():
                    sent.append(client.publish(topic, json.dumps(payload), qos=1, retain=True))
                for stream in self.streams:  # retained states from before (a crash) must not say ON
                    for label in self.labels:
                        state = "ON" if (stream, label) in self._active else "OFF"
                        topic = active_topic(self.prefix, stream, self.label_ids[label])
                        sent.append(client.publish(topic, state, qos=1, retain=True))
            self._connected.set()
        failed = sum(1 for info in sent if info.rc != self._mqtt.MQTT_ERR_SUCCESS)
        if failed:
            log.warning(
                "MQTT: %d of %d announcements (availability, discovery, states) not sent", failed, len(sent)
            )
        log.info("MQTT connected to %s", host_port(self.address.host, self.address.port))

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self.problem = "the connection failed (nothing listening there, a network error or a TLS mismatch)"

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected or not self.problem.startswith("it refused"):  # keep why it refused
            self.problem = f"disconnected: {reason}"

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (a broker that is down is retried with backoff) and start the thread."""
        self.client.connect_async(self.address.host, self.address.port, keepalive=KEEPALIVE_S)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="streamd-mqtt", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def flush(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until every message queued so far is handed to the broker or
        counted as undelivered, so that the final status counts them; False on timeout."""
        if self._thread is None or not self._thread.is_alive():
            return self._queue.unfinished_tasks == 0
        return wait_until_handled(self._queue, timeout)

    def stop(self, timeout: float = 2.0) -> None:
        """Send what is queued (bounded), say ``offline``, disconnect."""
        if self._thread is not None:
            deadline = time.monotonic() + timeout
            while self._thread.is_alive():
                try:
                    self._queue.put(None, timeout=0.05)
                    break
                except queue.Full:
                    if time.monotonic() > deadline:
                        break
            self._thread.join(max(0.1, deadline - time.monotonic()))
        if self._connected.is_set():
            info = self.client.publish(self.availability, "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=1.0)
        self.client.disconnect()
        self.client.loop_stop()
        self._count_unsent()

    # -- sink (publisher thread) -----------------------------------------------------------------------

    def __call__(self, msg: dict[str, Any]) -> None:
        if msg["type"] not in self.types and not (msg["type"] == "event" and self.cfg.discovery):
            return
        try:
            self._queue.put_nowait(msg)
        except queue.Full:
            self._lost("the MQTT queue is full", msg["stream"])

    # -- own thread --------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            msg = self._queue.get()
            if msg is None:
                self._queue.task_done()
                return
            try:
                self._forward(msg)
            except Exception:  # a bug here must not end the thread silently
                log.exception("MQTT sink failed on a message")
                self._lost("an internal error", msg["stream"])
            finally:
                self._queue.task_done()

    def _forward(self, msg: dict[str, Any]) -> None:
        kind, stream = msg["type"], msg["stream"]
        if kind == "event" and self.cfg.discovery and msg["label"] in self.labels:
            key = (stream, msg["label"])
            with self._active_lock:  # with the publish: never between a connection's snapshot and its states
                if msg["state"] == "start":
                    self._active.add(key)
                else:
                    self._active.discard(key)
                state = "ON" if msg["state"] == "start" else "OFF"
                topic = active_topic(self.prefix, stream, self.label_ids[msg["label"]])
                self._publish(topic, state, stream, retain=True)
        if kind not in self.types:
            return
        if kind == "prediction" and self.cfg.prediction_interval_s > 0:
            now = time.monotonic()
            if now - self._last_prediction.get(stream, -1e18) < self.cfg.prediction_interval_s:
                return
            self._last_prediction[stream] = now
        body = messages.encode(msg)[1]
        self._publish(f"{self.prefix}/{stream}/{kind}", body, stream, retain=self.cfg.retain)

    def _publish(self, topic: str, payload: str | bytes, stream: str, *, retain: bool) -> None:
        if not self._connected.is_set():
            where = host_port(self.address.host, self.address.port)
            self._lost(f"the broker at {where} is not connected; {self.problem}", stream)
            return
        info = self.client.publish(topic, payload, qos=self.cfg.qos, retain=retain)
        if info.rc == self._mqtt.MQTT_ERR_SUCCESS:
            self.delivered += 1
            self._by_stream.setdefault(stream, Counter())["mqtt_delivered"] += 1
        else:
            self._lost(self._mqtt.error_string(info.rc), stream)

    def _lost(self, why: str, stream: str) -> None:
        self.undelivered += 1
        self._by_stream.setdefault(stream, Counter())["mqtt_undelivered"] += 1
        if not self._warned:
            self._warned = True
            log.warning("MQTT: a message was not delivered (%s); further losses are only counted", why)

    def _count_unsent(self) -> None:
        while True:
            try:
                msg = self._queue.get_nowait()
            except queue.Empty:
                return
            if msg is not None:
                self.undelivered += 1
                self._by_stream.setdefault(msg["stream"], Counter())["mqtt_undelivered"] += 1
            self._queue.task_done()

    @property
    def counters(self) -> dict[str, int]:
        """Messages handed to the broker and messages lost, over all streams."""
        return {"mqtt_delivered": self.delivered, "mqtt_undelivered": self.undelivered}

    def counters_for(self, stream: str) -> dict[str, int]:
        """The same counts for the messages of one stream."""
        counts = self._by_stream.get(stream, Counter())
        return {"mqtt_delivered": counts["mqtt_delivered"], "mqtt_undelivered": counts["mqtt_undelivered"]}
