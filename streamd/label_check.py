"""Event rules must name labels the model has: a typo would otherwise silently watch nothing."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from streamd.config import DaemonConfig, name_source
from streamd.errors import ConfigError
from streamd.events import EventConfig


def check_event_labels(cfg: EventConfig, labels: Sequence[str]) -> None:
    """Raise ``ConfigError`` for the first label in thresholds/allow/deny the model lacks (near matches)."""
    check_labels(
        [
            ("events.thresholds", list(cfg.thresholds)),
            ("events.allow", list(cfg.allow)),
            ("events.deny", list(cfg.deny)),
        ],
        labels,
    )


def check_daemon_labels(cfg: DaemonConfig, labels: Sequence[str]) -> None:
    """Every label a daemon config names: the event rules', and MQTT's binary sensors' and the clips'
    while those are on (a typo there would leave a sensor that never turns on, or save no clip). The
    error names the file that set the label, as the config's own errors do."""
    try:
        check_event_labels(cfg.events, labels)
        named = []
        if cfg.mqtt.url:
            named.append(("mqtt.binary_sensors", cfg.mqtt.binary_sensors))
        if cfg.clips.dir:
            named.append(("clips.labels", cfg.clips.labels))
        check_labels(named, labels)
    except ConfigError as exc:
        raise name_source(cfg, exc) from None


def check_labels(named: Sequence[tuple[str, Sequence[str]]], labels: Sequence[str]) -> None:
    """Raise ``ConfigError`` for the first name (in ``(where, names)`` order) that is not in ``labels``."""
    known = set(labels)
    for where, names in named:
        for name in names:
            if name not in known:
                near = difflib.get_close_matches(name, list(labels), n=3, cutoff=0.6)
                hint = f"did you mean {', '.join(near)}?" if near else f"the model has {len(labels)} labels"
                raise ConfigError(f"{where}: unknown label {name!r} ({hint})")
