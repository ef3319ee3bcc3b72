"""MQTT sink (``--mqtt mqtt://HOST:PORT[/PREFIX]``, ``[mqtt]``), with Home Assistant discovery.

Every message goes out with the same JSON body as on ZeroMQ, on ``PREFIX/<stream>/<type>``. The client
announces ``online`` on ``PREFIX/availability`` (retained) and leaves ``offline`` as its last will. With
discovery on it publishes, retained, a sensor per stream while predictions are published (state: the top
label; attribute: its score) and a binary sensor per configured label and stream, whose state topic
``PREFIX/<stream>/active/<label>`` gets ``ON`` at the event's start and ``OFF`` at its end.

Store and forward, and the pipeline never waits: the publisher thread only puts a message on a bounded
queue (full: the oldest is dropped and counted). This module's own thread sends the queue in order while
the broker is connected and waits while it is not; paho's network thread reconnects with a doubling
backoff. What counts as delivered: ``streamd.mqtt_delivery``. paho is imported only when MQTT is on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import secrets
import socket
import threading
import time
from typing import Any

from streamd import messages
from streamd.config_sections import MqttSection
from streamd.errors import ConfigError
from streamd.handled_queue import wait_until_handled
from streamd.mqtt_address import check_settings, parse_url
from streamd.mqtt_delivery import Deliveries, drain, put_back, put_newest
from streamd.mqtt_discovery import active_topic, announcements, slug, unique_slugs
from streamd.net_address import host_port

log = logging.getLogger(__name__)

PAHO_QUEUE = 1000  # messages handed to paho and not yet confirmed, at most (then the thread waits)
KEEPALIVE_S = 30
WAIT_S = 0.05  # how often a waiting thread looks again (the connection, confirmations, a stop)
STOPPED = "the sink stopped before it was sent"


class MqttSink:
    """A publisher sink that forwards messages to an MQTT broker from its own thread."""

    def __init__(self, cfg: MqttSection, streams: list[str], labels: list[str]) -> None:
        import paho.mqtt.client as mqtt

        self._mqtt = mqtt
        self.cfg = cfg
        self.address = address = parse_url(cfg.url)
        check_settings(cfg, address)
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
        self.deliveries = Deliveries(streams)
        self.problem = "not connected yet"  # why the broker is not connected (paho callbacks set it)
        self._last_prediction: dict[str, float] = {}
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=cfg.queue_size)
        self._connected = threading.Event()  # and messages may go (see _on_connect)
        self._online_mid: int | None = None
        self._stopping = threading.Event()
        self._stop_by = float("inf")
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
        client.on_publish = self._on_publish
        return client

    def _forwards(self, kind: str) -> bool:
        """Whether messages of ``kind`` go out (with discovery on, events drive the binary sensors)."""
        return kind in self.types or (kind == "event" and self.cfg.discovery)

    # -- paho callbacks (its network thread) -----------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self.problem = f"it refused the connection: {reason}"
            log.warning("MQTT broker %s refused the connection: %s", self.address.host, reason)
            return
        self.problem = "not connected yet"
        online = client.publish(self.availability, "online", qos=1, retain=True)
        sent = [online]
        # under the lock until connected: an event's state is either in this snapshot or published after
        with self._active_lock:
            if self.cfg.discovery:
                for topic, payload in announcements(
                    *(self.prefix, self.cfg.discovery_prefix, self.node, self.streams, self.labels),
                    self._active,
                    top_label="prediction" in self.types,
                    binary=self._forwards("event"),  # always with discovery on: events drive the sensors
                ):
                    sent.append(client.publish(topic, payload, qos=1, retain=True))
            # messages go once "online" is acknowledged: after what paho re-sends on its own when this
            # callback returns (what it held from the last connection), which newer states must follow
            self._online_mid = online.mid if online.rc == self._mqtt.MQTT_ERR_SUCCESS else None
            if self._online_mid is None:
                self._connected.set()
        if failed := sum(1 for info in sent if info.rc != self._mqtt.MQTT_ERR_SUCCESS):
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
        if self.cfg.qos == 0:  # paho drops the QoS 0 messages it had not written: never confirmed
            self.deliveries.give_up(f"the connection was lost: {reason}")

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        if mid == self._online_mid:
            self._connected.set()
        self.deliveries.confirm(mid)

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
        """Wait (at most ``timeout`` s) until every message queued so far is confirmed or counted as
        undelivered, so that the final status counts them; False on timeout."""
        deadline = time.monotonic() + timeout
        if self._thread is None or not self._thread.is_alive():
            handled = self._queue.unfinished_tasks == 0
        else:
            handled = wait_until_handled(self._queue, timeout)
        return handled and self.deliveries.wait_settled(deadline)

    def stop(self, timeout: float = 2.0) -> None:
        """Send what is queued while connected (bounded), say ``offline``, disconnect; what is still queued
        or unconfirmed then is counted as undelivered. Ends at once if the broker is not connected."""
        deadline = time.monotonic() + timeout
        self._stop_by = deadline
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()) + WAIT_S)
        if self._connected.is_set():
            self.deliveries.wait_settled(deadline)
            info = self.client.publish(self.availability, "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=1.0)
        self.client.disconnect()
        self.client.loop_stop()
        self.deliveries.give_up(self._why("not confirmed by the broker when the sink stopped"))
        for msg in drain(self._queue):
            self.deliveries.lost(self._why(STOPPED), msg["stream"])

    # -- sink (publisher thread) -----------------------------------------------------------------------

    def __call__(self, msg: dict[str, Any]) -> None:
        if not self._forwards(msg["type"]):
            return
        for oldest in put_newest(self._queue, msg):  # the newest states survive a long outage
            why = self._why("the MQTT queue is full (the broker confirms slower than messages come)")
            self.deliveries.lost(why, oldest["stream"])

    # -- own thread --------------------------------------------------------------------------------------

    def _run(self) -> None:
        while self._wait_sendable():
            try:
                msg = self._queue.get(timeout=WAIT_S)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            if not self._connected.is_set():  # lost while it waited: the message stays first in the queue
                put_back(self._queue, msg)
                continue
            try:
                self._forward(msg)
            except Exception:  # a bug here must not end the thread silently
                log.exception("MQTT sink failed on a message")
                self.deliveries.lost("an internal error", msg["stream"])
            finally:
                self._queue.task_done()

    def _wait_sendable(self) -> bool:
        """Wait until the broker is connected and paho has room; False once the sink stops (at once
        without a connection, else at the stop's deadline)."""
        while True:
            connected = self._connected.is_set()
            if self._stopping.is_set() and (not connected or time.monotonic() > self._stop_by):
                return False
            if not connected:
                self._connected.wait(WAIT_S)
                continue
            self.deliveries.confirmed.clear()
            if self.deliveries.outstanding() < PAHO_QUEUE:
                return True
            self.deliveries.confirmed.wait(WAIT_S)

    def _forward(self, msg: dict[str, Any]) -> None:
        kind, stream = msg["type"], msg["stream"]
        if kind == "event" and self.cfg.discovery and msg["label"] in self.labels:
            key = (stream, msg["label"])
            sendable = self._wait_sendable()  # not under _active_lock: a connection's snapshot takes it
            with self._active_lock:  # with the publish: never between a connection's snapshot and its states
                state = "ON" if msg["state"] == "start" else "OFF"
                (self._active.add if state == "ON" else self._active.discard)(key)
                topic = active_topic(self.prefix, stream, self.label_ids[msg["label"]])
                if sendable:
                    self._send(topic, state, stream, retain=True, wait=False)
            if not sendable:
                self.deliveries.lost(self._why(STOPPED), stream)
        if kind not in self.types:
            return
        if kind == "prediction" and self.cfg.prediction_interval_s > 0:
            now = time.monotonic()
            if now - self._last_prediction.get(stream, -1e18) < self.cfg.prediction_interval_s:
                return
            self._last_prediction[stream] = now
        body = messages.encode(msg)[1]
        self._send(f"{self.prefix}/{stream}/{kind}", body, stream, retain=self.cfg.retain)

    def _send(
        self, topic: str, payload: str | bytes, stream: str, *, retain: bool, wait: bool = True
    ) -> None:
        """Hand one message to paho (``wait``: until the broker is connected, trying again if the
        connection went meanwhile) and note its mid until paho confirms it."""
        mqtt = self._mqtt
        while True:
            if wait and not self._wait_sendable():
                self.deliveries.lost(self._why(STOPPED), stream)
                return
            with self.deliveries.lock:  # see Deliveries: paho may confirm before publish() returns
                info = self.client.publish(topic, payload, qos=self.cfg.qos, retain=retain)
                # QoS > 0 without a connection: paho keeps it and sends it on reconnecting
                if info.rc == mqtt.MQTT_ERR_SUCCESS or (info.rc == mqtt.MQTT_ERR_NO_CONN and self.cfg.qos):
                    self.deliveries.note(info.mid, stream)
                    return
            if not wait or info.rc not in (mqtt.MQTT_ERR_NO_CONN, mqtt.MQTT_ERR_QUEUE_SIZE):
                self.deliveries.lost(self._why(mqtt.error_string(info.rc)), stream)
                return
            self._stopping.wait(WAIT_S / 5)  # QoS 0 as the connection went, or paho full: send it again

    # -- counting --------------------------------------------------------------------------------------

    def _why(self, otherwise: str) -> str:
        if self._connected.is_set():
            return otherwise
        where = host_port(self.address.host, self.address.port)
        return f"the broker at {where} is not connected; {self.problem}"

    @property
    def counters(self) -> dict[str, int]:
        """Messages confirmed (see ``streamd.mqtt_delivery``) and messages lost, over all streams."""
        return self.deliveries.counters()

    def counters_for(self, stream: str) -> dict[str, int]:
        """The same counts for the messages of one stream."""
        return self.deliveries.counters(stream)
