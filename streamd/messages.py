"""Message bodies published over ZeroMQ: builders, a size-bounded JSON codec and the schema.

Every body carries ``schema``, ``type`` ("prediction" | "event" | "status"), ``stream``, ``t_start`` and
``t_end`` (seconds from the stream's start) and ``wall_time`` (unix seconds); the publisher adds ``seq``
(see ``with_seq``) to every message it sends. On the wire a message is two
frames: ``[topic, utf-8 JSON]`` with topic ``streamd.<stream>.<type>``. Only JSON is ever decoded.

This module is pure: no threads, sockets or devices.
"""

from __future__ import annotations

import json
import math
import operator
import re
import time
import unicodedata
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

SCHEMA_VERSION = "streamd/1"
MAX_MESSAGE_BYTES = 65536
MAX_TOPIC_BYTES = 256
TOPIC_ROOT = "streamd"
MESSAGE_TYPES = ("prediction", "event", "status")
EVENT_STATES = ("start", "end")
STATUS_STATES = ("starting", "running", "device_error", "stalled", "overloaded", "stopped", "finished")
STATUS_COUNTERS = (
    "samples",
    "windows",
    "dropped_windows",
    "overruns",
    "rtf",
    "model_errors",
    "late_results",
    "queue_depth",
    "published",
    "publish_dropped",
    "restarts",
)
FLOAT_COUNTERS = frozenset({"rtf"})
LEVEL_FLOOR_DBFS = -120.0
MAX_STREAM_CHARS = 64
MAX_LABEL_CHARS = 256
MAX_STATUS_MESSAGE_CHARS = 1000

_STREAM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*")
_COUNTER_RE = re.compile(r"[a-z][a-z0-9_]*")


def stream_name(text: str, fallback: str = "stream") -> str:
    """Turn any text (a device name, a file stem) into a valid stream name: ``[A-Za-z0-9][A-Za-z0-9_-]*``;
    accented letters keep their base letter (``Café`` -> ``Cafe``); ``fallback`` when nothing is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^A-Za-z0-9_\-]+", "_", ascii_text).strip("_-")
    return name[:MAX_STREAM_CHARS] or fallback


def check_stream(stream: str) -> str:
    """Return ``stream`` if it is a valid stream name, else raise ValueError."""
    if not isinstance(stream, str) or len(stream) > MAX_STREAM_CHARS or not _STREAM_RE.fullmatch(stream):
        raise ValueError(
            f"invalid stream name {stream!r}: use letters, digits, '_' or '-' (at most {MAX_STREAM_CHARS})"
        )
    return stream


def topic(stream: str, kind: str) -> str:
    """The topic of a message: ``streamd.<stream>.<kind>``."""
    if kind not in MESSAGE_TYPES:
        raise ValueError(f"unknown message type {kind!r}; expected one of {', '.join(MESSAGE_TYPES)}")
    return f"{TOPIC_ROOT}.{check_stream(stream)}.{kind}"


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}")
    return number


def _non_negative(name: str, value: float) -> float:
    number = _finite(name, value)
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {number}")
    return number


def _count(name: str, value: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {number}")
    return number


def stream_seconds(name: str, value: float) -> float:
    """A stream time as messages carry it: >= 0, to the microsecond (no float noise such as 33.8952500001)."""
    return round(_non_negative(name, value), 6)


def _header(kind: str, stream: str, t_start: float, t_end: float, wall_time: float | None) -> dict[str, Any]:
    start = stream_seconds("t_start", t_start)
    end = stream_seconds("t_end", t_end)
    if end < start:
        raise ValueError(f"t_end ({end}) is before t_start ({start})")
    return {
        "schema": SCHEMA_VERSION,
        "type": kind,
        "stream": check_stream(stream),
        "t_start": start,
        "t_end": end,
        "wall_time": _non_negative("wall_time", time.time() if wall_time is None else wall_time),
    }


def _label(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_LABEL_CHARS:
        raise ValueError(f"a label must be a non-empty string of at most {MAX_LABEL_CHARS} characters")
    return name


def level_dbfs_value(level_dbfs: float) -> float:
    """A level that JSON can carry: silence (-inf) becomes ``LEVEL_FLOOR_DBFS``."""
    if isinstance(level_dbfs, bool) or math.isnan(float(level_dbfs)):
        raise ValueError(f"level_dbfs must be a number, got {level_dbfs!r}")
    return max(LEVEL_FLOOR_DBFS, float(level_dbfs))


def prediction(
    stream: str,
    t_start: float,
    t_end: float,
    model: str,
    labels: Sequence[tuple[str, float]],
    latency_ms: float,
    *,
    level_dbfs: float | None = None,
    window_index: int | None = None,
    wall_time: float | None = None,
) -> dict[str, Any]:
    """A prediction for the window ``[t_start, t_end]``; ``labels`` are sorted best first here."""
    if not isinstance(model, str) or not model:
        raise ValueError("model must be a non-empty string")
    if not labels:
        raise ValueError("a prediction needs at least one label")
    pairs = [(_label(name), _finite(f"score of {name!r}", score)) for name, score in labels]
    pairs.sort(key=lambda pair: -pair[1])
    msg = _header("prediction", stream, t_start, t_end, wall_time)
    msg["model"] = model
    msg["labels"] = [{"label": name, "score": score} for name, score in pairs]
    msg["latency_ms"] = _non_negative("latency_ms", latency_ms)
    if level_dbfs is not None:
        msg["level_dbfs"] = level_dbfs_value(level_dbfs)
    if window_index is not None:
        msg["window_index"] = _count("window_index", window_index)
    return msg


def event(
    stream: str,
    label: str,
    state: str,
    t_start: float,
    t_end: float,
    peak_score: float,
    *,
    wall_time: float | None = None,
) -> dict[str, Any]:
    """An event boundary: ``state`` "start" (so far ``[t_start, t_end]``) or "end" (the whole event)."""
    if state not in EVENT_STATES:
        raise ValueError(f"event state must be 'start' or 'end', got {state!r}")
    msg = _header("event", stream, t_start, t_end, wall_time)
    msg["label"] = _label(label)
    msg["state"] = state
    msg["peak_score"] = _finite("peak_score", peak_score)
    return msg


def empty_counters() -> dict[str, int | float]:
    """Every required status counter, zeroed."""
    return {name: 0.0 if name in FLOAT_COUNTERS else 0 for name in STATUS_COUNTERS}


def _counters(counters: Mapping[str, int | float]) -> dict[str, int | float]:
    missing = [name for name in STATUS_COUNTERS if name not in counters]
    if missing:
        raise ValueError(f"status counters missing: {', '.join(missing)}")
    out: dict[str, int | float] = {}
    for name, value in counters.items():
        if not isinstance(name, str) or not _COUNTER_RE.fullmatch(name):
            raise ValueError(f"invalid counter name {name!r}")
        if name in FLOAT_COUNTERS:
            out[name] = _non_negative(name, value)
        elif name in STATUS_COUNTERS:
            out[name] = _count(name, value)  # type: ignore[arg-type]
        else:
            try:
                out[name] = _count(name, value)  # type: ignore[arg-type]
            except ValueError:
                out[name] = _finite(name, value)
    return out


def status(
    stream: str,
    t_start: float,
    t_end: float,
    counters: Mapping[str, int | float],
    state: str,
    *,
    message: str | None = None,
    wall_time: float | None = None,
) -> dict[str, Any]:
    """A status report: the stream's ``state`` and its counters (see ``STATUS_COUNTERS``)."""
    if state not in STATUS_STATES:
        raise ValueError(f"unknown status state {state!r}; expected one of {', '.join(STATUS_STATES)}")
    msg = _header("status", stream, t_start, t_end, wall_time)
    msg["state"] = state
    msg["counters"] = _counters(counters)
    if message is not None:
        if not isinstance(message, str) or len(message) > MAX_STATUS_MESSAGE_CHARS:
            raise ValueError(f"status message must be a string of at most {MAX_STATUS_MESSAGE_CHARS} chars")
        msg["message"] = message
    return msg


def with_seq(msg: Mapping[str, Any], seq: int) -> dict[str, Any]:
    """A copy of ``msg`` carrying ``seq``, its stream's sequence number (0, 1, 2, ... per stream, no holes
    among the messages a publisher sends), so that a subscriber can count the messages it missed."""
    return {**msg, "seq": _count("seq", seq)}


def encode(msg: Mapping[str, Any]) -> list[bytes]:
    """``[topic, utf-8 JSON]`` frames; ValueError if not JSON-serialisable or over ``MAX_MESSAGE_BYTES``."""
    try:
        kind, stream = msg["type"], msg["stream"]
    except (KeyError, TypeError):
        raise ValueError("a message needs 'type' and 'stream'") from None
    try:
        body = json.dumps(msg, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"message is not plain JSON: {exc}") from None
    if len(body) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(body)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    return [topic(stream, kind).encode("ascii"), body]


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name} in message")


def decode(frames: Sequence[bytes]) -> dict[str, Any]:
    """Parse ``[topic, JSON]`` frames into a body; ValueError on anything malformed, oversized or foreign."""
    if len(frames) != 2:
        raise ValueError(f"expected 2 frames [topic, body], got {len(frames)}")
    topic_bytes, body = bytes(frames[0]), bytes(frames[1])
    if len(topic_bytes) > MAX_TOPIC_BYTES:
        raise ValueError(f"topic of {len(topic_bytes)} bytes exceeds {MAX_TOPIC_BYTES}")
    if len(body) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(body)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        msg = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"message body is not valid JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ValueError("message body is not a JSON object")
    if msg.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"unsupported message schema {msg.get('schema')!r}; expected {SCHEMA_VERSION!r}")
    kind, stream = msg.get("type"), msg.get("stream")
    if kind not in MESSAGE_TYPES or not isinstance(stream, str):
        raise ValueError(f"message has an unknown type {kind!r} or no stream")
    expected = topic(stream, kind).encode("ascii")
    if topic_bytes != expected:
        raise ValueError(f"topic {topic_bytes!r} does not match the body ({expected!r})")
    return msg


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) that every message body satisfies."""
    text = resources.files("streamd").joinpath("schema", "messages.schema.json").read_text("utf-8")
    return json.loads(text)
