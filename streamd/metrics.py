"""Prometheus metrics (``--metrics HOST:PORT``, ``[metrics]``): a message sink plus an HTTP endpoint.

Counters and gauges are the latest status message's counters of each stream, so a scrape shows exactly
what the status messages say (``streamd_status_t_end_seconds`` names the status message they come from).
Events are counted by label from event ``start`` messages; the window-to-publish latency histogram comes
from predictions (their ``latency_ms`` plus the time the message waited for the publisher thread), and
the model-time histogram from every model call. Everything is labelled by stream. ``prometheus_client`` is
imported only when metrics are on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from streamd import messages
from streamd.errors import ConfigError
from streamd.net_address import host_port
from streamd.security import is_loopback_endpoint

DEFAULT_HOST = "127.0.0.1"
# status counter -> (metric name, help); Prometheus adds ``_total`` to counters.
COUNTERS = {
    "samples": ("streamd_samples", "Audio samples through the feature stage (model rate)"),
    "windows": ("streamd_windows", "Windows (or recurrent steps) classified"),
    "dropped_windows": ("streamd_dropped_windows", "Windows dropped when the engine fell behind"),
    "overruns": ("streamd_overruns", "Capture ring and device overruns"),
    "model_errors": ("streamd_model_errors", "Windows the model failed on"),
    "lost_samples": ("streamd_lost_samples", "Source samples overwritten before they were read"),
    "late_results": ("streamd_late_results", "Results later than one hop"),
    "restarts": ("streamd_restarts", "Reopens of the input"),
    "decode_errors": ("streamd_decode_errors", "Packets of a network stream that could not be decoded"),
    "filled_samples": (
        "streamd_filled_samples",
        "Samples of a network stream's short losses filled with silence",
    ),
    # integrations (present while they are on; a network source's outages)
    "mqtt_delivered": (
        "streamd_mqtt_delivered",
        "MQTT messages the broker acknowledged (QoS 1, 2; under QoS 0: written to the connection)",
    ),
    "mqtt_undelivered": ("streamd_mqtt_undelivered", "Messages that could not go to the MQTT broker"),
    "clips_saved": ("streamd_clips_saved", "Event clips written"),
    "clip_write_errors": ("streamd_clip_write_errors", "Event clips that could not be written"),
    "clips_truncated": ("streamd_clips_truncated", "Event clips that lost their start (event too long)"),
    "clips_lost": ("streamd_clips_lost", "Ended events whose audio was gone before their clip was cut"),
    "clips_dropped_speech": ("streamd_clips_dropped_speech", "Event clips not saved: speech found"),
    "clips_unchecked": ("streamd_clips_unchecked", "Event clips not saved: privacy filter unavailable"),
    "outages": ("streamd_outages", "Outages of a live input (device reopened, network source reconnected)"),
    "outage_s": ("streamd_outage_seconds", "Stream seconds lost to outages (the stream clock skips them)"),
}
# counters of the whole daemon (one publisher for every stream): exported once, without a stream label,
# so that summing over streams cannot count them several times
DAEMON_COUNTERS = {
    "published": ("streamd_published", "Messages published (all streams)"),
    "publish_dropped": ("streamd_publish_dropped", "Messages the publisher dropped (all streams)"),
    "native_stderr_lines": ("streamd_native_stderr_lines", "Lines native audio libraries printed (logged)"),
}
GAUGES = {
    "rtf": ("streamd_realtime_factor", "Audio seconds processed per wall second"),
    "queue_depth": ("streamd_queue_depth", "Windows waiting for the model"),
}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MODEL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``PORT`` (host 127.0.0.1) -> (host, port); ConfigError when malformed."""
    host, sep, port = text.strip().rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]") and len(host) > 2  # an IPv6 literal, [::1]
    if sep and not bracketed and (not host or any(c in host for c in ":[]")):
        host = ""  # malformed: an unbracketed IPv6 address, an unclosed bracket
    host = (host[1:-1] if bracketed else host) if sep else DEFAULT_HOST
    if not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise ConfigError(f"--metrics: expected HOST:PORT (e.g. 127.0.0.1:9109), got {text!r}")
    return host, int(port)


def check_metrics_exposure(listen: str, insecure: bool) -> None:
    """The endpoint has no authentication: beyond loopback only with ``--insecure``, the rule of every
    socket streamd binds (``streamd.security.check_bind_allowed``; CURVE cannot guard HTTP)."""
    host, port = parse_listen(listen)
    if insecure or is_loopback_endpoint(f"tcp://{host_port(host, port)}"):
        return
    raise ConfigError(
        f"--metrics {listen}: refusing to serve metrics beyond this machine without authentication (they "
        "name the sounds heard); keep a loopback address, or give --insecure"
    )


class Metrics:
    """Collects from messages (publisher thread) and model calls (engine thread); serves on ``listen``."""

    def __init__(self, listen: str, model: str = "") -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.host, self.port = parse_listen(listen)
        self.model = model
        self._lock = threading.Lock()
        self._status: dict[str, dict[str, Any]] = {}  # stream -> latest status message
        self._level: dict[str, float] = {}
        self.registry = CollectorRegistry()
        self.events = Counter(
            "streamd_events", "Events started, by label", ["stream", "label"], registry=self.registry
        )
        self.latency = Histogram(
            "streamd_window_to_publish_seconds",
            "From a window's last sample to its prediction leaving the publisher",
            ["stream"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_time = Histogram(
            "streamd_model_seconds", "Model time per call", buckets=MODEL_BUCKETS, registry=self.registry
        )
        self.registry.register(_StatusCollector(self))
        self._server: Any = None

    def start(self) -> None:
        """Bind and serve (ConfigError when the address cannot be bound)."""
        from prometheus_client import start_http_server

        try:
            self._server, _ = start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"--metrics: cannot listen on {host_port(self.host, self.port)} ({exc.strerror})"
            ) from None
        self.port = int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def observe_model_time(self, seconds: float) -> None:
        self.model_time.observe(seconds)

    def __call__(self, msg: dict[str, Any]) -> None:
        """A publisher sink: every message passes here after it was sent."""
        stream, kind = msg["stream"], msg["type"]
        if kind == "status":
            with self._lock:
                self._status[stream] = msg
        elif kind == "prediction":
            waited = max(0.0, time.time() - msg["wall_time"])
            self.latency.labels(stream).observe(msg["latency_ms"] / 1000.0 + waited)
            if "level_dbfs" in msg:
                with self._lock:
                    self._level[stream] = msg["level_dbfs"]
        elif kind == "event" and msg["state"] == "start":
            self.events.labels(stream, msg["label"]).inc()

    def snapshot(self) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
        with self._lock:
            return dict(self._status), dict(self._level)


class _StatusCollector:
    """Yields the status-counter metrics at scrape time from the latest status message of each stream."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        status, levels = self.metrics.snapshot()
        for key, (name, doc) in COUNTERS.items():
            family = CounterMetricFamily(name, doc, labels=["stream"])
            for stream, msg in status.items():
                if key in msg["counters"]:
                    family.add_metric([stream], msg["counters"][key])
            yield family
        for key, (name, doc) in DAEMON_COUNTERS.items():  # the latest of any stream's status messages
            values = [msg["counters"][key] for msg in status.values() if key in msg["counters"]]
            if values:
                yield CounterMetricFamily(name, doc, value=max(values))
        for key, (name, doc) in GAUGES.items():
            family = GaugeMetricFamily(name, doc, labels=["stream"])
            for stream, msg in status.items():
                family.add_metric([stream], msg["counters"][key])
            yield family
        level = GaugeMetricFamily("streamd_level_dbfs", "Level of the latest window", labels=["stream"])
        for stream, value in levels.items():
            level.add_metric([stream], value)
        yield level
        t_end = GaugeMetricFamily(
            "streamd_status_t_end_seconds", "Stream time of the status message shown", labels=["stream"]
        )
        state = GaugeMetricFamily(
            "streamd_device_state", "1 for the stream's current state", labels=["stream", "state"]
        )
        for stream, msg in status.items():
            t_end.add_metric([stream], msg["t_end"])
            for name in messages.STATUS_STATES:
                state.add_metric([stream, name], 1.0 if msg["state"] == name else 0.0)
        yield t_end
        yield state
