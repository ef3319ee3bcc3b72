"""Home Assistant MQTT discovery: the retained config payloads that make each stream a sensor (its top
label) and each configured label of each stream a binary sensor (on while an event of it is open).

Topic and id parts are slugs of the stream and label names; two streams whose slugs would be the same
(``x`` and ``X``) get a short hash of their exact name added, so that neither loses its sensors.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import Any


def slug(text: str) -> str:
    """A topic- and id-safe form of a label (``Crying baby`` -> ``crying_baby``)."""
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "label"


def stream_ids(streams: list[str]) -> dict[str, str]:
    """Stream name -> its id in discovery topics: its ``slug``, with a short hash of the exact name where
    two streams' slugs would be the same (``x`` and ``X``, ``a-b`` and ``a_b``)."""
    counts = Counter(slug(s) for s in streams)
    return {
        s: slug(s) if counts[slug(s)] == 1 else f"{slug(s)}_{hashlib.sha1(s.encode()).hexdigest()[:6]}"
        for s in streams
    }


def active_topic(prefix: str, stream: str, label: str) -> str:
    """The state topic of a binary sensor: ``ON`` while an event of ``label`` is open on ``stream``."""
    return f"{prefix}/{stream}/active/{slug(label)}"


def discovery_payloads(
    prefix: str, discovery_prefix: str, node: str, streams: list[str], labels: list[str]
) -> dict[str, dict[str, Any]]:
    """Home Assistant discovery config topics -> payloads: a sensor per stream, a binary sensor per
    stream and label."""
    device = {"identifiers": [node], "name": f"streamd ({node})", "manufacturer": "streamd"}
    availability = f"{prefix}/availability"
    out: dict[str, dict[str, Any]] = {}
    ids = stream_ids(streams)
    for stream in streams:
        uid = f"{node}_{stream}_top_label"
        out[f"{discovery_prefix}/sensor/{node}/{ids[stream]}_top_label/config"] = {
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
        for label in labels:
            uid = f"{node}_{stream}_{slug(label)}"
            out[f"{discovery_prefix}/binary_sensor/{node}/{ids[stream]}_{slug(label)}/config"] = {
                "name": f"{stream} {label}",
                "unique_id": uid,
                "object_id": uid,
                "state_topic": active_topic(prefix, stream, label),
                "payload_on": "ON",
                "payload_off": "OFF",
                "device_class": "sound",
                "availability_topic": availability,
                "device": device,
            }
    return out
