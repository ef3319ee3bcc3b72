"""MQTT sink (``--mqtt mqtt://HOST:PORT[/PREFIX]``, ``[mqtt]``), with Home Assistant discovery.

Every message goes out with the same JSON body as on ZeroMQ, on ``PREFIX/<stream>/<type>``. The client
announces ``online`` on ``PREFIX/availability`` (retained) and leaves ``offline`` as its last will. With
discovery on it publishes, retained, a sensor per stream while predictions are published (state: the top
label; attribute: its score) and a binary sensor per configured label and stream, whose state topic
``PREFIX/<stream>/active/<label>`` gets ``ON`` at the event's start and ``OFF`` at its end.

Store and forward, and the pipeline never waits: the publisher thread only puts a message on a bounded
queue (full: the oldest is dropped and counted). This module's own thread sends the queue in order while
the broker is connected and waits while it is not; paho's network thread reconnects with a doubling
backoff. What counts, and when the rest is written off: ``streamd.mqtt_delivery``. paho: only if on.
How long the end may take: ``finish`` and ``stop``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from typing import Any

from streamd import messages
from streamd.config_sections import MqttSection
from streamd.handled_queue import wait_until_handled
from streamd.mqtt_address import check_settings, client_ids, configure_client, parse_url
from streamd.mqtt_connection_log import ConnectionLog
from streamd.mqtt_delivery import Deliveries, Item, Outbox
from streamd.mqtt_discovery import active_topic, announcements, unique_slugs
from streamd.net_address import host_port

log = logging.getLogger(__name__)

PAHO_QUEUE = 1000  # messages handed to paho and not yet confirmed, at most (then the thread waits)
KEEPALIVE_S = 30
WAIT_S = 0.05  # how often a waiting thread looks again (the connection, confirmations, a stop)
BRIEF_S = 0.25  # a stop's wait for paho's thread to end, and for a broker that left the finish unanswered
NOT_YET = "not connected yet"
STOPPED = "the sink stopped before it was sent"
FULL = "the MQTT queue is full (the broker confirms slower than messages come)"


class MqttSink:
    """A publisher sink that forwards messages to an MQTT broker from its own thread."""

    def __init__(self, cfg: MqttSection, streams: list[str], labels: list[str]) -> None:
        import paho.mqtt.client as mqtt

        self._mqtt = mqtt
        self.cfg = cfg
        self.address = address = parse_url(cfg.url)
        self.prefix, self.discovery_prefix = check_settings(cfg, address)
        self.client_id, self.node = client_ids(cfg)
        self.streams, self.labels = streams, labels
        self.label_ids = unique_slugs(labels)  # labels differing only in case keep topics of their own
        self.availability = f"{self.prefix}/availability"
        self.deliveries = Deliveries(streams)
        self.problem = NOT_YET  # why the broker is not connected (paho callbacks set it)
        self.connection_log = ConnectionLog(host_port(address.host, address.port))  # each change said once
        self.outbox = Outbox(cfg, labels, self.deliveries)
        self._queue = self.outbox.queue
        self._connected = threading.Event()  # and messages may go (see _on_connect)
        self._online_mid: int | None = None
        self._stopping = threading.Event()
        self._stop_by = float("inf")
        self._unanswered = False  # a finish timed out with the broker connected: the stop waits no more
        self._thread: threading.Thread | None = None
        self.client = self._client()

    def _client(self) -> Any:
        mqtt = self._mqtt
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
        configure_client(client, self.cfg, self.address, self.availability)
        # what a connection announces at once (availability, discovery, binary sensor states) on top
        announced = 1 + len(self.streams) * (1 + 2 * len(self.labels)) if self.cfg.discovery else 1
        client.max_queued_messages_set(PAHO_QUEUE + announced)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    # -- paho callbacks (its network thread) -----------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self.problem = f"it refused the connection: {reason}"
            self.connection_log.failed(self.problem)  # each retry is refused alike: said once
            return
        self.problem = NOT_YET
        online = client.publish(self.availability, "online", qos=1, retain=True)
        sent = [online]
        # under the lock until connected: an event's state is either in this snapshot or published after
        with self.outbox.lock:
            if self.cfg.discovery:
                for topic, payload in announcements(
                    *(self.prefix, self.discovery_prefix, self.node, self.streams, self.labels),
                    self.outbox.active,
                    top_label="prediction" in self.outbox.types,
                    binary=True,  # with discovery on, events drive the binary sensors
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
        self.connection_log.connected()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self.problem = "the connection failed (nothing listening there, a network error or a TLS mismatch)"
        self.connection_log.failed(self.problem)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected or not self.problem.startswith("it refused"):  # keep why it refused
            self.problem = f"disconnected: {reason}"
        if was_connected and not self._stopping.is_set():  # the stop's own disconnect is no loss
            self.connection_log.lost(str(reason))
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

    def flush(self, timeout: float, *, until_down: bool = False) -> bool:
        """Wait (at most ``timeout`` s) until every message queued so far is confirmed or counted as
        undelivered; False on timeout (``until_down``: or once the broker is known not to be connected)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks or self.deliveries.outstanding():
            sending = self._thread is not None and self._thread.is_alive()
            # down: it failed, refused or dropped the connection, so nothing is confirmed in time
            down = until_down and not self._connected.is_set() and self.problem != NOT_YET
            if time.monotonic() >= deadline or (self._queue.unfinished_tasks and not sending) or down:
                return False
            time.sleep(WAIT_S / 5)
        return True

    def finish(self, timeout: float) -> bool:
        """The daemon's finish hook: queue the predictions ``prediction_interval_s`` held back, ``flush``;
        what is still queued or unconfirmed after ``timeout`` (at once once the broker is known not to be
        connected) is counted undelivered now, so the final status counts every message before it. The
        sink goes on; a written-off message confirmed later stays undelivered."""
        for item in self.outbox.release_held():
            self.outbox.put(item, self._why(FULL))
        if self.flush(timeout, until_down=True):
            return True
        self._unanswered = self._connected.is_set()  # connected, yet nothing confirmed in time: frozen
        self.outbox.write_off(self._why("not sent or not confirmed when the daemon finished"), closed=False)
        wait_until_handled(self._queue, 1.0)  # the thread counts the one in its hand (it looks every WAIT_S)
        return False

    def stop(self, timeout: float = 2.0) -> None:
        """Send what is queued while connected, say ``offline``, disconnect; what is still queued or
        unconfirmed then is counted as undelivered. At most ``timeout`` (``BRIEF_S`` after a finish a
        connected broker left unanswered) plus ``BRIEF_S``; at once without a connection."""
        self._stop_by = deadline = time.monotonic() + (BRIEF_S if self._unanswered else timeout)
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))
        if self._connected.is_set():
            self.deliveries.wait_settled(deadline)
            info = self.client.publish(self.availability, "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # sent before the disconnect in any case
                info.wait_for_publish(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
        why = self._why("not sent or not confirmed when the sink stopped")  # before we disconnect
        self.client.disconnect()
        # paho's thread ends by itself once disconnected: not waited for sleeping out a reconnect wait (1 s)
        network = threading.Thread(target=self.client.loop_stop, name="streamd-mqtt-stop", daemon=True)
        network.start()
        network.join(BRIEF_S)
        self.outbox.write_off(why, closed=True)  # from here the thread counts what it holds, sends nothing
        if self._thread is not None:
            self._thread.join(1.0)
            if self._thread.is_alive():
                log.warning("MQTT sink thread did not end within 1 s (what it holds is counted, never sent)")
        self.outbox.write_off(why, closed=True)  # anything queued meanwhile

    # -- sink (publisher thread) -----------------------------------------------------------------------

    def __call__(self, msg: dict[str, Any]) -> None:
        for item in self.outbox.accept(msg):  # none if it would never be sent
            self.outbox.put(item, self._why(FULL))

    # -- own thread --------------------------------------------------------------------------------------

    def _run(self) -> None:
        while self._wait_sendable():
            try:
                item = self._queue.get(timeout=WAIT_S)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            if not self._connected.is_set():  # lost while it waited: first again in the queue, or counted
                if not self.outbox.put_back(item, self._why(FULL)):
                    self._queue.task_done()
                continue
            try:
                self._forward(item)
            except Exception:  # a bug here must not end the thread silently
                log.exception("MQTT sink failed on a message")
                self.deliveries.lost("an internal error", item[1]["stream"])
            finally:
                self._queue.task_done()

    def _wait_sendable(self, number: int | None = None) -> bool:
        """Wait until the broker is connected and paho has room; False once the sink stops (at once
        without a connection, else at the stop's deadline) or message ``number`` is written off."""
        while True:
            connected = self._connected.is_set()
            if self._stopping.is_set() and (not connected or time.monotonic() > self._stop_by):
                return False
            if number is not None and self.deliveries.written_off(number):
                return False
            if not connected:
                self._connected.wait(WAIT_S)
                continue
            self.deliveries.confirmed.clear()
            if self.deliveries.outstanding() < PAHO_QUEUE:
                return True
            self.deliveries.confirmed.wait(WAIT_S)

    def _forward(self, item: Item) -> None:
        msg = item[1]
        kind, stream, body = msg["type"], msg["stream"], msg["type"] in self.outbox.types
        if self.outbox.drives_sensor(msg):
            # wait not under the outbox's lock: a connection's snapshot takes it
            if not self._wait_sendable(item[0]):
                self.outbox.lose(item, self._why(STOPPED))
                return
            with self.outbox.lock:  # with the publish: never between a connection's snapshot and its states
                state = "ON" if self.outbox.apply(item) else "OFF"  # a newer change dropped meanwhile wins
                topic = active_topic(self.prefix, stream, self.label_ids[msg["label"]])
                if not self._send(item, topic, state, retain=True, wait=False, counts=not body):
                    return
        if body:
            topic = f"{self.prefix}/{stream}/{kind}"
            self._send(item, topic, messages.encode(msg)[1], retain=self.cfg.retain)

    def _send(
        self, item: Item, topic: str, payload: str, *, retain: bool, wait: bool = True, counts: bool = True
    ) -> bool:
        """Hand one part of ``item`` to paho (``wait``: until the broker is connected, trying again if the
        connection went meanwhile); ``counts``: the part whose confirmation delivers it (its mid is noted).
        False: the message is lost (counted), nothing more of it goes."""
        mqtt = self._mqtt
        while True:
            if wait and not self._wait_sendable(item[0]):
                return self.outbox.lose(item, self._why(STOPPED))
            with self.deliveries.lock:  # see Deliveries: paho may confirm before publish() returns
                if self.deliveries.written_off(item[0]):
                    return self.outbox.lose(item, self._why(STOPPED))
                info = self.client.publish(topic, payload, qos=self.cfg.qos, retain=retain)
                # QoS > 0 without a connection: paho keeps it and sends it on reconnecting
                if info.rc == mqtt.MQTT_ERR_SUCCESS or (info.rc == mqtt.MQTT_ERR_NO_CONN and self.cfg.qos):
                    if counts:
                        self.deliveries.note(info.mid, item[1]["stream"])
                    return True
            if not wait or info.rc not in (mqtt.MQTT_ERR_NO_CONN, mqtt.MQTT_ERR_QUEUE_SIZE):
                return not counts or self.outbox.lose(item, self._why(mqtt.error_string(info.rc)))
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
