"""The daemon's configuration: typed, nested dataclasses loaded from TOML and overridden by the command line.

Layers, later ones winning: built-in defaults, ``--config FILE.toml``, ``--model MODEL.toml`` (a file of
the same shape whose ``[model]`` table names a checkpoint), then explicit command line options. Unknown
keys and wrong types are rejected with a ``ConfigError`` naming the file and the key (the TOML loader
and the typed check are ``audio_core.toml_config``, shared with the experiment config). Relative checkpoint
paths in a TOML file are relative to that file.
"""

from __future__ import annotations

import argparse
import math
import typing
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from pathlib import Path
from typing import Any

from audio_core.toml_config import check_table, load_toml
from streamd.errors import ConfigError, StreamdError
from streamd.events import EventConfig

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"


@dataclass
class ModelSection:
    """Which classifier to run, where and how."""

    name: str = "default"  # a shipped model: "default" (windowed) or "recurrent"
    checkpoint: str | None = None  # a .safetensors checkpoint; overrides ``name``
    compute: str = "auto"  # "auto" | "cpu" | "cuda"
    precision: str = "auto"  # "auto" | "fp32" | "bf16" | "int8" (see ``streamd.precision``)


@dataclass
class WindowSection:
    """Sliding windows (windowed models; recurrent models step per patch column)."""

    window_s: float | None = None  # None: the window the checkpoint was trained on (5.0 s for 498 frames)
    hop_s: float = 1.0


@dataclass
class EngineSection:
    """The model worker: batching, its bounded queue and what happens when it falls behind."""

    queue_size: int = (
        0  # windows waiting for the model; 0: one per stream under block, four under drop_oldest
    )
    max_batch: int = 8
    overload: str = "auto"  # "drop_oldest" | "block" | "auto" (drop_oldest live, block for replay)
    threads: int = 0  # torch intra-op threads; 0: on CPU one per core but one (capture keeps a core)


@dataclass
class CaptureSection:
    """Audio input: ring size, block size, and the stall watchdog for live devices."""

    ring_s: float = 10.0  # live capture ring (file replay uses a few blocks to keep latency low)
    block_s: float = 0.02  # device block / file chunk (the resampler waits for the next block)
    max_block_s: float = 0.5  # file chunk at --speed max
    watchdog_s: float = 3.0  # no samples for this long from a live device: "stalled"


@dataclass
class PublishSection:
    """Where and what to publish."""

    endpoint: str = DEFAULT_ENDPOINT
    top_k: int = 5
    status_interval_s: float = 2.0
    queue_size: int = 10000
    sndhwm: int = 10000  # messages ZeroMQ keeps per subscriber; past it that subscriber loses messages
    wait_for_subscriber_s: float = 0.0  # before the audio starts, wait this long for a subscriber


@dataclass
class MqttSection:
    """MQTT sink (off unless ``url`` is set): see ``streamd.mqtt_sink``."""

    url: str = ""  # mqtt://HOST:PORT[/PREFIX] or mqtts://...; empty: off
    prefix: str = "streamd"  # topics PREFIX/<stream>/{prediction,event,status} (a path in the url wins)
    username: str = ""
    password: str = ""
    tls: bool = False  # also implied by mqtts://
    ca_file: str = ""  # CA certificates for TLS (empty: the system's)
    qos: int = 0
    retain: bool = False
    client_id: str = ""  # empty: streamd-<host>
    types: list[str] = field(default_factory=lambda: ["prediction", "event", "status"])
    prediction_interval_s: float = 0.0  # at most one prediction per stream this often (0: all)
    discovery: bool = True  # Home Assistant MQTT discovery
    discovery_prefix: str = "homeassistant"
    binary_sensors: list[str] = field(default_factory=list)  # labels (empty: [events] allow)
    queue_size: int = 1000  # messages waiting for the MQTT thread; more are dropped and counted
    reconnect_max_s: float = 30.0  # reconnect backoff cap


@dataclass
class MetricsSection:
    """Prometheus endpoint (off unless ``listen`` is set): see ``streamd.metrics``."""

    listen: str = ""  # HOST:PORT or PORT (bind 127.0.0.1); empty: off


@dataclass
class ClipsSection:
    """Event clips (off unless ``dir`` is set): see ``streamd.clips``."""

    dir: str = ""
    pre_roll_s: float = 2.0
    post_roll_s: float = 2.0
    format: str = "flac"
    labels: list[str] = field(default_factory=list)  # labels to save (empty: all)
    max_files: int = 0  # retention (0: no limit)
    max_bytes: int = 0
    max_age_s: float = 0.0
    max_clip_s: float = 60.0  # longest event kept whole (the audio held per stream)
    privacy: str = "off"  # "drop_speech": clips with speech are not saved (streamd.privacy)
    speech_threshold: float = 0.5  # speech probability of a 32 ms frame that counts as speech
    min_speech_s: float = 0.4  # consecutive speech that makes a clip one with speech


@dataclass
class DaemonConfig:
    """Everything the daemon needs besides its sources."""

    model: ModelSection = field(default_factory=ModelSection)
    windows: WindowSection = field(default_factory=WindowSection)
    engine: EngineSection = field(default_factory=EngineSection)
    capture: CaptureSection = field(default_factory=CaptureSection)
    publish: PublishSection = field(default_factory=PublishSection)
    events: EventConfig = field(default_factory=EventConfig)
    mqtt: MqttSection = field(default_factory=MqttSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    clips: ClipsSection = field(default_factory=ClipsSection)

    def overload_policy(self, live: bool) -> str:
        """The explicit policy: ``auto`` resolves to drop_oldest for live capture, block for replay."""
        if self.engine.overload != "auto":
            return self.engine.overload
        return "drop_oldest" if live else "block"

    def queue_size(self, streams: int, policy: str) -> int:
        """The engine queue bound. Automatic (0): under ``block`` one window per stream, so a producer
        waits as soon as the engine is one round behind (latency stays near two model calls); under
        ``drop_oldest`` four per stream, so a short hiccup does not cost windows."""
        if self.engine.queue_size:
            return self.engine.queue_size
        return streams * (1 if policy == "block" else 4)


_CHOICES: dict[str, tuple[str, ...]] = {
    "model.compute": ("auto", "cpu", "cuda"),
    "model.precision": ("auto", "fp32", "bf16", "int8"),
    "engine.overload": ("auto", "drop_oldest", "block"),
    "mqtt.qos": (0, 1, 2),
    "clips.format": ("flac",),
    "clips.privacy": ("off", "drop_speech"),
}
_POSITIVE = {
    "windows.window_s",
    "windows.hop_s",
    "engine.max_batch",
    "capture.ring_s",
    "capture.block_s",
    "capture.max_block_s",
    "capture.watchdog_s",
    "publish.top_k",
    "publish.status_interval_s",
    "publish.queue_size",
    "publish.sndhwm",
    "mqtt.queue_size",
    "mqtt.reconnect_max_s",
    "clips.max_clip_s",
    "clips.speech_threshold",
    "clips.min_speech_s",
}


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "thresholds":
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _build(cls: type, values: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {k: _build(hints[k], v) if is_dataclass(hints[k]) else v for k, v in values.items()}
    return cls(**kwargs)


_NON_NEGATIVE = {"engine.queue_size", "engine.threads", "publish.wait_for_subscriber_s"}
_NON_NEGATIVE |= {"mqtt.prediction_interval_s", "clips.pre_roll_s", "clips.post_roll_s"}
_NON_NEGATIVE |= {"clips.max_files", "clips.max_bytes", "clips.max_age_s"}
# Upper bounds: every size and duration is finite and small enough to allocate.
_MAXIMUM: dict[str, float] = {
    "windows.window_s": 60.0,
    "windows.hop_s": 60.0,
    "engine.queue_size": 10_000,
    "engine.max_batch": 1024,
    "engine.threads": 1024,
    "capture.ring_s": 600.0,
    "capture.block_s": 1.0,
    "capture.max_block_s": 10.0,
    "capture.watchdog_s": 3600.0,
    "publish.top_k": 1000,
    "publish.status_interval_s": 3600.0,
    "publish.queue_size": 1_000_000,
    "publish.sndhwm": 1_000_000,
    "publish.wait_for_subscriber_s": 3600.0,
    "mqtt.queue_size": 1_000_000,
    "mqtt.reconnect_max_s": 3600.0,
    "mqtt.prediction_interval_s": 3600.0,
    "clips.pre_roll_s": 60.0,
    "clips.post_roll_s": 60.0,
    "clips.max_clip_s": 600.0,
}
_AT_MOST_ONE = {"clips.speech_threshold"}


def _check_values(table: dict[str, Any], source: str) -> None:
    """Check the values a (possibly partial) nested table sets: choices, signs, event rules."""
    for section, values in table.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            dotted = f"{section}.{key}"
            if dotted in _CHOICES and value not in _CHOICES[dotted]:
                choices = ", ".join(str(c) for c in _CHOICES[dotted])
                raise ConfigError(f"{source}: {dotted} must be one of {choices}, got {value!r}")
            if value is None:
                continue
            if dotted in _POSITIVE and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{source}: {dotted} must be positive, got {value!r}")
            if dotted in _NON_NEGATIVE and not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{source}: {dotted} must be >= 0, got {value!r}")
            if dotted in _MAXIMUM and value > _MAXIMUM[dotted]:
                raise ConfigError(f"{source}: {dotted} must be at most {_MAXIMUM[dotted]:g}, got {value!r}")
            if dotted in _AT_MOST_ONE and not value <= 1:
                raise ConfigError(f"{source}: {dotted} must be <= 1, got {value!r}")
    if isinstance(table.get("events"), dict):
        try:
            EventConfig(**table["events"])
        except StreamdError as exc:
            raise ConfigError(f"{source}: {exc}") from None


def _validate(cfg: DaemonConfig, source: str) -> DaemonConfig:
    _check_values(asdict(cfg), source)
    return cfg


# -- public API -----------------------------------------------------------------------------------------


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file checked against ``DaemonConfig`` (relative checkpoint paths made absolute)."""
    path = Path(path)
    data = load_toml(path, ConfigError)
    try:
        table = check_table(DaemonConfig, data, "", ConfigError)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    checkpoint = table.get("model", {}).get("checkpoint")
    if checkpoint is not None:
        table["model"]["checkpoint"] = str((path.parent / Path(checkpoint).expanduser()).resolve())
    return table


def config_from_layers(layers: list[tuple[str, dict[str, Any]]]) -> DaemonConfig:
    """Merge checked tables (``(source name, table)``, lowest first) into a validated ``DaemonConfig``."""
    merged: dict[str, Any] = {}
    for source, table in layers:
        _check_values(table, source)  # so that an error names the file (or option) that set the value
        merged = _merge(merged, table)
    source = layers[-1][0] if layers else "defaults"
    try:
        cfg = _build(DaemonConfig, merged)
    except StreamdError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return _validate(cfg, source)


def load_config(path: str | Path) -> DaemonConfig:
    """One TOML file over the defaults."""
    return config_from_layers([(str(path), read_toml(path))])


def load_model_toml(path: str | Path) -> dict[str, Any]:
    """A ``--model`` TOML: same shape as the daemon config, with ``[model] checkpoint`` required."""
    table = read_toml(path)
    if not table.get("model", {}).get("checkpoint"):
        raise ConfigError(f'{path}: a model config needs [model] checkpoint = "PATH"')
    return table


# -- command line ---------------------------------------------------------------------------------------


def add_daemon_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``replay``; unset ones leave the config file's value."""
    parser.add_argument(
        "--config", type=Path, metavar="FILE.toml", help="daemon config (see configs/daemon.toml)"
    )
    parser.add_argument(
        "--model", metavar="NAME|FILE.toml", help="'default' (windowed), 'recurrent', or a model config TOML"
    )
    parser.add_argument(
        "--checkpoint", type=Path, metavar="PATH", help="a .safetensors checkpoint (overrides --model)"
    )
    parser.add_argument(
        "--window", type=float, metavar="S", help="window length in seconds (default: the checkpoint's own)"
    )
    parser.add_argument("--hop", type=float, metavar="S", help="hop between windows in seconds (default 1.0)")
    parser.add_argument(
        "--publish", metavar="ENDPOINT", help=f"ZeroMQ PUB endpoint (default {DEFAULT_ENDPOINT})"
    )
    parser.add_argument("--top-k", type=int, metavar="K", help="labels per prediction (default 5)")
    parser.add_argument(
        "--compute", choices=_CHOICES["model.compute"], help="where the model runs (default auto)"
    )
    parser.add_argument(
        "--precision",
        choices=_CHOICES["model.precision"],
        help="auto (default: bf16 where the hardware runs it natively, else fp32), fp32, bf16 or int8",
    )
    parser.add_argument(
        "--overload",
        choices=_CHOICES["engine.overload"],
        help="when the engine falls behind: drop_oldest or block (auto: drop live, block replay)",
    )
    parser.add_argument("--queue-size", type=int, metavar="N", help="engine queue length in windows")
    parser.add_argument("--max-batch", type=int, metavar="N", help="most windows per model call")
    parser.add_argument("--status-interval", type=float, metavar="S", help="seconds between status messages")
    parser.add_argument(
        "--wait-subscriber",
        type=float,
        metavar="S",
        help="wait up to S seconds for a subscriber before starting",
    )
    parser.add_argument("--mqtt", metavar="URL", help="also publish to MQTT: mqtt://HOST:PORT[/PREFIX]")
    parser.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus metrics (host 127.0.0.1)")
    parser.add_argument("--save-clips", metavar="DIR", help="save each event's audio (FLAC) in DIR")
    parser.add_argument("--no-dashboard", action="store_true", help="do not show the terminal dashboard")
    parser.add_argument("--json", action="store_true", help="print every published message as a JSON line")


_FLAGS: dict[str, str] = {
    "window": "windows.window_s",
    "hop": "windows.hop_s",
    "publish": "publish.endpoint",
    "top_k": "publish.top_k",
    "compute": "model.compute",
    "precision": "model.precision",
    "overload": "engine.overload",
    "queue_size": "engine.queue_size",
    "max_batch": "engine.max_batch",
    "status_interval": "publish.status_interval_s",
    "wait_subscriber": "publish.wait_for_subscriber_s",
    "mqtt": "mqtt.url",
    "metrics": "metrics.listen",
    "save_clips": "clips.dir",
}


def config_from_args(args: argparse.Namespace) -> DaemonConfig:
    """Defaults, then ``--config``, then a ``--model`` TOML, then explicit options."""
    layers: list[tuple[str, dict[str, Any]]] = []
    if getattr(args, "config", None) is not None:
        layers.append((str(args.config), read_toml(args.config)))
    model = getattr(args, "model", None)
    if model is not None:
        if model.endswith(".toml"):
            layers.append((model, load_model_toml(model)))
        else:
            layers.append(("--model", {"model": {"name": model, "checkpoint": None}}))
    cli: dict[str, Any] = {}
    for flag, dotted in _FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            section, key = dotted.split(".")
            cli.setdefault(section, {})[key] = value
    if getattr(args, "checkpoint", None) is not None:
        cli.setdefault("model", {})["checkpoint"] = str(args.checkpoint)
    layers.append(("command line", cli))
    return config_from_layers(layers)


def with_windows(cfg: DaemonConfig, window_s: float | None, hop_s: float) -> DaemonConfig:
    """A copy with other window settings (validated; ``window_s`` None: the checkpoint's own)."""
    window = None if window_s is None else float(window_s)
    out = replace(cfg, windows=WindowSection(window_s=window, hop_s=float(hop_s)))
    return _validate(out, "windows")
