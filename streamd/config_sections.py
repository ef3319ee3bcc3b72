"""The sections of the daemon config, each a dataclass that validates itself.

Each field's allowed choices and bounds sit next to it (``audio_core.checks.rule``); ``__post_init__``
checks them with the one shared checker, so a section that exists is valid, and an error is one line
naming the key (``model.compute must be one of ...``). Upper bounds keep every size and duration finite
and small enough to allocate. ``[events]`` is ``streamd.events.EventConfig``, which checks itself alike.
A field holding a path is declared with ``path_setting``: in a config file it is relative to that file
(``streamd.config.resolve_path_settings``, the one rule of every path setting).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audio_core.checks import check_fields, rule
from audio_core.compute import COMPUTES
from streamd.errors import ConfigError

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
NO_CHECKPOINT = "give a file, or leave the key out for [model] name"  # what an empty checkpoint says
MAX_THREADS = 1024  # model threads of any command (torch crashes on some huge counts)


def path_setting(default: str | None = "", *, refuse_empty: str = "") -> Any:
    """A field holding a path, relative to the config file that sets it. "" leaves it unset (off, or the
    default) unless ``refuse_empty`` says what to give instead."""
    return field(default=default, metadata={"path": True, "refuse_empty": refuse_empty})


@dataclass
class ModelSection:
    """Which classifier to run, where and how."""

    name: str = "default"  # a shipped model: audio_core.shipped_models.SHIPPED_MODELS
    checkpoint: str | None = path_setting(
        None, refuse_empty=NO_CHECKPOINT
    )  # .safetensors; overrides ``name``
    compute: str = rule("auto", choices=COMPUTES)
    precision: str = rule("auto", choices=("auto", "fp32", "bf16", "int8"))  # see ``models.precision``

    def __post_init__(self) -> None:
        check_fields(self, "model", ConfigError)


@dataclass
class WindowSection:
    """Sliding windows (windowed models; recurrent models step per patch column)."""

    # None: the window the checkpoint was trained on (5.0 s for 498 frames)
    window_s: float | None = rule(None, gt=0, le=60.0)
    hop_s: float = rule(1.0, gt=0, le=60.0)
    # several paced streams (devices, network, replay at a set speed): stream k of N places its windows
    # k/N of a hop earlier, so their model calls spread over the hop instead of coinciding
    stagger: bool = True

    def __post_init__(self) -> None:
        check_fields(self, "windows", ConfigError)


@dataclass
class EngineSection:
    """The model worker: batching, its bounded queue and what happens when it falls behind."""

    # windows waiting for the model; 0: one per stream under block, four under drop_oldest
    queue_size: int = rule(0, ge=0, le=10_000)
    max_batch: int = rule(8, gt=0, le=1024)
    # "drop_oldest" | "block" | "auto" (drop_oldest live, block for replay)
    overload: str = rule("auto", choices=("auto", "drop_oldest", "block"))
    threads: int = rule(0, ge=0, le=MAX_THREADS)  # model workers (split_scoring); 0: on CPU one per core

    def __post_init__(self) -> None:
        check_fields(self, "engine", ConfigError)


# Replay chunk at --speed max: each chunk is one hand-off between the reader, feature and engine threads;
# 0.5-s chunks made a 10-minute replay take 1.3-1.4 times as long as 2-s chunks.
MAX_SPEED_BLOCK_S = 2.0


@dataclass
class CaptureSection:
    """Audio input: ring size, block size, and the stall watchdog for live devices."""

    ring_s: float = rule(10.0, ge=0.5, le=600.0)  # live capture ring (file replay uses a few blocks)
    block_s: float = rule(0.02, gt=0, le=1.0)  # device block / file chunk
    max_block_s: float = rule(MAX_SPEED_BLOCK_S, gt=0, le=10.0)  # file chunk at --speed max
    watchdog_s: float = rule(3.0, gt=0, le=3600.0)  # no samples for this long from a live device: "stalled"

    def __post_init__(self) -> None:
        check_fields(self, "capture", ConfigError)


@dataclass
class PublishSection:
    """Where and what to publish."""

    endpoint: str = DEFAULT_ENDPOINT
    top_k: int = rule(5, gt=0, le=1000)
    status_interval_s: float = rule(2.0, gt=0, le=3600.0)
    queue_size: int = rule(10000, gt=0, le=1_000_000)
    # messages ZeroMQ keeps per subscriber; past it that subscriber loses messages
    sndhwm: int = rule(10000, gt=0, le=1_000_000)
    # before the audio starts, wait this long for a subscriber
    wait_for_subscriber_s: float = rule(0.0, ge=0, le=3600.0)

    def __post_init__(self) -> None:
        check_fields(self, "publish", ConfigError)


@dataclass
class MqttSection:
    """MQTT sink (off unless ``url`` is set): see ``streamd.mqtt_sink``."""

    url: str = ""  # mqtt://HOST:PORT[/PREFIX] or mqtts://...; empty: off
    # topics PREFIX/<stream>/{prediction,event,status}; a path in the url wins (in one file: must agree)
    prefix: str = "streamd"
    username: str = ""
    password: str = ""
    tls: bool = False  # also implied by mqtts://
    ca_file: str = path_setting()  # CA certificates for TLS (empty: the system's)
    qos: int = rule(1, choices=(0, 1, 2))  # 1, 2: mqtt_delivered is the broker's acknowledgement
    retain: bool = False
    client_id: str = ""  # empty: streamd-<host> (blank: refused)
    types: list[str] = field(default_factory=lambda: ["prediction", "event", "status"])
    # at most one prediction per stream per this many seconds of its audio (stream time; 0: all)
    prediction_interval_s: float = rule(0.0, ge=0, le=3600.0)
    discovery: bool = True  # Home Assistant MQTT discovery
    discovery_prefix: str = "homeassistant"
    binary_sensors: list[str] = field(default_factory=list)  # labels (empty: [events] allow)
    # messages waiting to be sent (while the broker is not connected too); full: the oldest is dropped
    queue_size: int = rule(1000, gt=0, le=1_000_000)
    reconnect_max_s: float = rule(30.0, gt=0, le=3600.0)  # reconnect backoff cap

    def __post_init__(self) -> None:
        check_fields(self, "mqtt", ConfigError)
        if self.client_id and not self.client_id.strip():  # an unset variable's doing, or a typo
            why = "give an id, or leave the key out for the default"
            raise ConfigError(f"mqtt.client_id {self.client_id!r} is blank: {why}")


@dataclass
class MetricsSection:
    """Prometheus endpoint (off unless ``listen`` is set): see ``streamd.metrics``."""

    listen: str = ""  # HOST:PORT or PORT (bind 127.0.0.1); empty: off


@dataclass
class ClipsSection:
    """Event clips (off unless ``dir`` is set): see ``streamd.clips``."""

    dir: str = path_setting()  # empty: off
    pre_roll_s: float = rule(2.0, ge=0, le=60.0)
    post_roll_s: float = rule(2.0, ge=0, le=60.0)
    format: str = rule("flac", choices=("flac",))
    labels: list[str] = field(default_factory=list)  # labels to save (empty: all)
    max_files: int = rule(0, ge=0)  # retention (0: no limit)
    max_bytes: int = rule(0, ge=0)
    max_age_s: float = rule(0.0, ge=0)
    max_clip_s: float = rule(60.0, gt=0, le=600.0)  # longest event kept whole (the audio held per stream)
    # "drop_speech": clips with speech are not saved (streamd.privacy)
    privacy: str = rule("off", choices=("off", "drop_speech"))
    # speech probability of a 32 ms frame that counts as speech
    speech_threshold: float = rule(0.5, gt=0, le=1)
    min_speech_s: float = rule(0.4, gt=0)  # consecutive speech that makes a clip one with speech

    def __post_init__(self) -> None:
        check_fields(self, "clips", ConfigError)
