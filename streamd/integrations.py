"""Wiring of the optional integrations (MQTT, Prometheus metrics, event clips) into a built daemon.

Each is off unless its section sets it (``--mqtt``, ``--metrics``, ``--save-clips``); its module (and
its library) is imported only then. ``attach`` hooks them to the publisher and daemon: clips still pending
when the streams end are written before the daemon's final status, so that its counters include them;
``close`` ends everything once the daemon has stopped.
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Any

from streamd.config import DaemonConfig, name_source
from streamd.errors import ConfigError
from streamd.net_address import host_port


class Integrations:
    """The integrations that are on, and how to end them."""

    def __init__(self) -> None:
        self.metrics: Any = None
        self.mqtt: Any = None
        self.clips: Any = None
        self.streams: list[tuple[str, Any]] = []  # (name, source) of each stream

    def close(self) -> None:
        if self.clips is not None:
            self.clips.close()
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.metrics is not None:
            self.metrics.stop()

    @property
    def counters(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for part in (self.mqtt, self.clips):
            if part is not None:
                out.update(part.counters)
        return out

    def stream_counters(self, index: int) -> dict[str, int | float]:
        """Status counters of stream ``index``: MQTT and clips (outages of any live source, a network one
        included, are the daemon's own ``outages``/``outage_s``)."""
        name, _ = self.streams[index]
        out: dict[str, int | float] = {}
        if self.mqtt is not None:
            out.update(self.mqtt.counters_for(name))
        if self.clips is not None:
            out.update(self.clips.counters_for(index))
        return out


def attach(cfg: DaemonConfig, daemon: Any, publisher: Any, *, start: bool = True) -> Integrations:
    """Start what ``cfg`` turns on and hook it in (``daemon``: a ``streamd.daemon.Daemon``). Without
    ``start`` (``--check``) the metrics server and the MQTT sink are built (their settings checked) but
    neither listens nor connects: a running service may hold the port or the broker's client id; the clips'
    folder is checked but not created. A bad setting's error names the file that set it."""
    out = Integrations()
    out.streams = [(s.name, s.source) for s in daemon.streams]
    daemon.counter_hooks.append(out.stream_counters)
    try:
        if cfg.metrics.listen:
            from streamd.metrics import Metrics, parse_listen

            metrics = Metrics(cfg.metrics.listen)  # its address checked
            if start:
                out.metrics = metrics
                metrics.start()
                if parse_listen(cfg.metrics.listen)[1] == 0:  # a port of the system's choosing: say which
                    print(f"streamd: metrics on http://{host_port(metrics.host, metrics.port)}/metrics",
                          file=sys.stderr)  # fmt: skip
                publisher.add_sink(metrics)
                daemon.engine.on_model_time = metrics.observe_model_time
        if cfg.mqtt.url:
            from streamd.mqtt_sink import MqttSink

            labels = cfg.mqtt.binary_sensors or cfg.events.allow
            mqtt = MqttSink(cfg.mqtt, [s.name for s in daemon.streams], list(labels))  # its settings checked
            if start:
                out.mqtt = mqtt
                mqtt.start()
                publisher.add_sink(mqtt)
                # sent, or counted undelivered, before the final status: it counts every message before it
                daemon.finish_hooks.append(partial(mqtt.finish, daemon.flush_s))
        if cfg.clips.dir and not start:  # --check: the folder is checked, nothing is created
            from streamd.output_folders import usable_folder_path

            usable_folder_path(cfg.clips.dir, "--save-clips")
        elif cfg.clips.dir:
            from streamd.clips import ClipRecorder

            streams = [(s.name, s.source.sample_rate, s.source.channels) for s in daemon.streams]
            lead_s = (
                cfg.events.min_hits * daemon.plan.result_every_s
            )  # an event's start before its announcing
            out.clips = ClipRecorder(cfg.clips, streams, lead_s=lead_s, hold_s=cfg.events.hold_s)
            publisher.add_sink(out.clips)  # how far the results are: the audio before them can go
            daemon.audio_taps.append(out.clips.tap)
            daemon.event_hooks.append(out.clips.on_event)
            daemon.finish_hooks.append(out.clips.close)  # pending clips written before the final status
    except BaseException as exc:
        out.close()
        if isinstance(exc, ConfigError):
            raise name_source(cfg, exc) from None
        raise
    return out
