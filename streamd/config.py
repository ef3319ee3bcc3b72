"""The daemon's configuration: typed, nested dataclasses loaded from TOML and overridden by the command line.

Layers, later ones winning: built-in defaults, ``--config FILE.toml``, ``--model MODEL.toml`` (a file of
the same shape whose ``[model]`` table names a checkpoint), then explicit command line options
(``streamd.config_cli``). Unknown keys and wrong types are rejected with a ``ConfigError`` naming the file
and the key (the TOML loader and the typed check are ``audio_core.toml_config``, shared with the
experiment config); each section checks its own values (``streamd.config_sections``). Every path setting
in a TOML file (``path_setting``: the checkpoint, the clips' folder, the CA file) is relative to that file
(``resolve_path_settings``); one on the command line stays relative to the working folder. A setting's
layer is kept (``DaemonConfig.origins``), so that errors found later name the file too (``name_source``).
"""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from audio_core.toml_config import check_table, load_toml
from streamd.config_sections import (
    CaptureSection,
    ClipsSection,
    EngineSection,
    MetricsSection,
    ModelSection,
    MqttSection,
    PublishSection,
    WindowSection,
)
from streamd.errors import ConfigError, StreamdError
from streamd.events import EventConfig
from streamd.mqtt_address import check_url_prefix


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

    def __post_init__(self) -> None:
        # "section.key" -> the layer that set it (a config file, "command line"; see config_from_layers)
        self.origins: dict[str, str] = {}

    def overload_policy(self, live: bool) -> str:
        """The explicit policy: ``auto`` resolves to drop_oldest for live capture, block for replay."""
        if self.engine.overload != "auto":
            return self.engine.overload
        return "drop_oldest" if live else "block"

    def queue_size(self, streams: int, policy: str, *, batch_floor: bool = False) -> int:
        """The engine queue bound. Automatic (0): under ``block`` one window per stream, so a producer
        waits as soon as the engine is one round behind, and with ``batch_floor`` (the daemon's choice
        for windowed models replaying files) at least one full batch, so that the engine takes whole
        batches while the producers compute the next windows (10 minutes at --speed max on 2 cores:
        17.0-18.0 s, against 20.3-22.3 s when the queue held one window and the two sides took turns);
        under ``drop_oldest`` four per stream, so a short hiccup does not cost windows."""
        if self.engine.queue_size:
            return self.engine.queue_size
        if policy != "block":
            return streams * 4
        return max(streams, self.engine.max_batch) if batch_floor else streams


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


def _check_values(table: dict[str, Any], source: str) -> None:
    """Check the values a (possibly partial) nested table sets: each section it names is built from them,
    so the section's own checks run (unset keys keep their valid defaults)."""
    hints = typing.get_type_hints(DaemonConfig)
    for section, values in table.items():
        if not isinstance(values, dict) or section not in hints:
            continue
        try:
            hints[section](**values)
            if section == "mqtt":
                check_url_prefix(values)  # both in one layer: they must agree
        except StreamdError as exc:
            raise ConfigError(f"{source}: {exc}") from None


# -- public API -----------------------------------------------------------------------------------------


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file checked against ``DaemonConfig`` (its path settings made absolute)."""
    path = Path(path)
    data = load_toml(path, ConfigError)
    try:
        table = check_table(DaemonConfig, data, "", ConfigError)
        resolve_path_settings(table, path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return table


def resolve_path_settings(table: dict[str, Any], path: Path) -> None:
    """The one rule of every path setting (``path_setting`` fields) in the config file ``path``: relative
    to the file's folder (``~`` expanded); "" leaves it unset where allowed; a blank one is refused."""
    hints = typing.get_type_hints(DaemonConfig)
    for section, values in table.items():
        for f in fields(hints[section]):
            value, refuse_empty = values.get(f.name), f.metadata.get("refuse_empty", "")
            if "path" not in f.metadata or value is None or (value == "" and not refuse_empty):
                continue
            if refuse_empty and not value.strip():  # not the file's own folder
                raise ConfigError(f"{section}.{f.name} is empty ({refuse_empty})")
            if not value.strip():
                raise ConfigError(f'{section}.{f.name} {value!r} is blank: give a path, or "" for none')
            values[f.name] = os.path.normpath(path.parent.absolute() / Path(value).expanduser())


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
    for source, table in layers:
        cfg.origins.update({f"{part}.{key}": source for part, values in table.items() for key in values})
    return cfg


# options that set a setting too, which errors about it name
_OPTIONS = {"--mqtt": "mqtt.url", "--metrics": "metrics.listen", "--save-clips": "clips.dir"}


def name_source(cfg: DaemonConfig, error: Exception | str) -> ConfigError:
    """A ``ConfigError`` for ``error``, a message about one setting that begins with its key (or with an
    option that sets it too), naming the layer that set it as every config error does (``FILE: key ...``)."""
    message = str(error)
    key = message.split(":")[0].split(" ")[0]
    if key in _OPTIONS:  # the option's own name if given on the command line, else its key in the file
        if cfg.origins.get(_OPTIONS[key], "command line") == "command line":
            return ConfigError(message)
        key, message = _OPTIONS[key], _OPTIONS[key] + message[len(key) :]
    source = cfg.origins.get(key)
    return ConfigError(f"{source}: {message}" if source else message)


def name_window_source(cfg: DaemonConfig, error: Exception | str) -> ConfigError:
    """A window or hop error named by the file that set the value (``FILE: windows.hop_s must ...``; a
    model that cannot take the window names the file that set ``window_s``); from an option, as is."""
    message = str(error)
    key = next((k for k in ("window_s", "hop_s") if message.startswith(k + " ")), None)
    if key is None and "cannot take windows" not in message:
        return ConfigError(message)  # not about the window or hop
    key = key or "window_s"
    rest = message[len(key) :] if message.startswith(key + " ") else f": {message}"
    source = cfg.origins.get(f"windows.{key}")
    if source in (None, "defaults", "command line"):  # an option's error reads as classify's and evaluate's
        return ConfigError(message)
    return ConfigError(f"{source}: windows.{key}{rest}")


def load_config(path: str | Path) -> DaemonConfig:
    """One TOML file over the defaults."""
    return config_from_layers([(str(path), read_toml(path))])


def load_model_toml(path: str | Path) -> dict[str, Any]:
    """A ``--model`` TOML: same shape as the daemon config, naming its model by ``[model] checkpoint`` or
    ``name`` (a shipped model; a checkpoint overrides it, as in a daemon config)."""
    table = read_toml(path)
    model = table.get("model", {})
    if not isinstance(model, dict) or not (model.get("checkpoint") or model.get("name")):
        raise ConfigError(f'{path}: a model config needs [model] checkpoint = "PATH" or name = "NAME"')
    if not model.get("checkpoint"):  # a name alone, as --model NAME: no checkpoint of a lower layer wins
        model["checkpoint"] = None
    return table


def with_windows(cfg: DaemonConfig, window_s: float | None, hop_s: float) -> DaemonConfig:
    """A copy with other window settings (validated; ``window_s`` None: the checkpoint's own)."""
    window = None if window_s is None else float(window_s)
    out = replace(cfg, windows=replace(cfg.windows, window_s=window, hop_s=float(hop_s)))
    out.origins = dict(cfg.origins)
    return out
