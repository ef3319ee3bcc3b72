"""Home Assistant MQTT discovery: the retained config payloads that make each stream a sensor (its top
label) and each configured label of each stream a binary sensor (on while an event of it is open).

Topic and id parts are slugs of the stream and label names (``slug``) and of the node (``node_slug``: the
client id); two streams (or labels) whose slugs would be the same (``x`` and ``X``) get a short hash of
their exact name added, so that neither loses its sensors.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from typing import Any


def slug(text: str) -> str:
    """A topic- and id-safe form of a stream or label name (``Crying baby`` -> ``crying_baby``). Its
    rule is what existing Home Assistant entities and state topics are named by: changing it would
    orphan them, so it stays as first published (``node_slug`` is the node's)."""
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "label"


def node_slug(text: str) -> str:
    """The node id's form of a client id: ``slug``'s (the id existing devices and entities carry), except
    that a client id with no ASCII letter or digit gets a short stable hash of it, not the shared word
    ``label`` (two such daemons were one device)."""
    plain = slug(text)
    return _short_hash(text) if plain == "label" and text.strip().lower() != "label" else plain


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:6]


def unique_slugs(names: list[str]) -> dict[str, str]:
    """Name -> its id in topics: its ``slug``, with a short hash of the exact name where two names' slugs
    would be the same (``x`` and ``X``, ``a-b`` and ``a_b``). A name that is its own slug keeps it even
    then, so adding ``Dog`` beside ``dog`` does not rename ``dog``'s sensor."""
    counts = Counter(slug(s) for s in names)
    return {
        s: slug(s) if counts[slug(s)] == 1 or s == slug(s) else f"{slug(s)}_{_short_hash(s)}" for s in names
    }


def active_topic(prefix: str, stream: str, label_id: str) -> str:
    """The state topic of a binary sensor: ``ON`` while an event of the label whose ``unique_slugs`` id
    is ``label_id`` is open on ``stream``."""
    return f"{prefix}/{stream}/active/{label_id}"


def discovery_payloads(
    prefix: str,
    discovery_prefix: str,
    node: str,
    streams: list[str],
    labels: list[str],
    *,
    top_label: bool = True,
) -> dict[str, dict[str, Any]]:
    """Home Assistant discovery config topics -> payloads: a sensor per stream (``top_label``: only when
    predictions are published, its state), a binary sensor per stream and label."""
    device = {"identifiers": [node], "name": f"streamd ({node})", "manufacturer": "streamd"}
    availability = f"{prefix}/availability"
    out: dict[str, dict[str, Any]] = {}
    ids = unique_slugs(streams)
    label_ids = unique_slugs(labels)
    for stream in streams:
        uid = f"{node}_{stream}_top_label"
        sensor = {
            "name": f"{stream} sound",
            "unique_id": uid,
            "object_id": uid,
            "state_topic": f"{prefix}/{stream}/prediction",
            "value_template": "{{ value_json.labels[0].label }}",
            "json_attributes_topic": f"{prefix}/{stream}/prediction",
            "json_attributes_template": (
                '{{ {"score": value_json.labels[0].score, "t_end": value_json.t_end} | tojson }}'
            ),
            "availability_topic": availability,
            "icon": "mdi:waveform",
            "device": device,
        }
        if top_label:
            out[f"{discovery_prefix}/sensor/{node}/{ids[stream]}_top_label/config"] = sensor
        for label in labels:
            uid = f"{node}_{stream}_{label_ids[label]}"
            out[f"{discovery_prefix}/binary_sensor/{node}/{ids[stream]}_{label_ids[label]}/config"] = {
                "name": f"{stream} {label}",
                "unique_id": uid,
                "object_id": uid,
                "state_topic": active_topic(prefix, stream, label_ids[label]),
                "payload_on": "ON",
                "payload_off": "OFF",
                "device_class": "sound",
                "availability_topic": availability,
                "device": device,
            }
    return out


def announcements(
    prefix: str,
    discovery_prefix: str,
    node: str,
    streams: list[str],
    labels: list[str],
    active: set[tuple[str, str]],
    *,
    top_label: bool,
    binary: bool,
) -> list[tuple[str, str]]:
    """(topic, payload) of what a connection publishes, retained: the discovery configs, empty for sensors
    that would get no state (``top_label``, ``binary``: whether predictions, binary sensor states are
    published), which removes any an earlier run announced; then each binary sensor's true state
    (``active``: (stream, label) of the open events), so that one left ``ON`` by a daemon that died is not."""
    every = discovery_payloads(prefix, discovery_prefix, node, streams, labels)
    wanted = discovery_payloads(
        prefix, discovery_prefix, node, streams, labels if binary else [], top_label=top_label
    )
    out = [(topic, json.dumps(wanted[topic]) if topic in wanted else "") for topic in every]
    label_ids = unique_slugs(labels)
    for stream in streams if binary else []:
        for label in labels:
            state = "ON" if (stream, label) in active else "OFF"
            out.append((active_topic(prefix, stream, label_ids[label]), state))
    return out
