"""Time-limited ZeroMQ subscribers for tests; every message received is checked against the JSON Schema.

``collect(endpoint, seconds)`` subscribes in the calling thread until the time limit (or ``until(msg)``)
and returns the decoded bodies. ``Collector(endpoint).start()`` does the same in a background thread;
``.stop()`` returns what it received. Both raise AssertionError if any message was malformed or broke
the schema. They never wait for an end marker: the time limit always ends them.
"""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import zmq

from streamd import messages
from streamd.security import secure_client_socket

Until = Callable[[dict[str, Any]], bool]
CurveKeys = tuple[Path, Path]  # (server public key file, client secret key file)


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with every local ``{"$ref": "#/$defs/x", ...}`` replaced by its target (annotations such as
    ``description`` kept beside it: same meaning, faster)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            others = {key: value for key, value in node.items() if key != "$ref"}
            return {**_inline_refs(defs[ref.removeprefix("#/$defs/")], defs), **others}
        return {key: _inline_refs(value, defs) for key, value in node.items() if key != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(value, defs) for value in node]
    return node


_SCHEMA = messages.load_schema()
jsonschema.Draft202012Validator.check_schema(_SCHEMA)
_VALIDATOR = jsonschema.Draft202012Validator(_inline_refs(_SCHEMA, _SCHEMA["$defs"]))


def validate(msg: dict[str, Any]) -> None:
    """Raise AssertionError naming every way ``msg`` breaks the message schema."""
    errors = sorted(_VALIDATOR.iter_errors(msg), key=lambda e: list(e.path))
    if errors:
        details = "; ".join(f"{'/'.join(map(str, e.path)) or '<body>'}: {e.message}" for e in errors)
        raise AssertionError(f"message breaks the schema: {details}\n{msg}")


def numbered(sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``sent`` as a publisher sends it: each message with its stream's next ``seq`` (0, 1, 2, ...)."""
    next_seq: dict[str, int] = {}
    out = []
    for msg in sent:
        seq = next_seq.get(msg["stream"], 0)
        next_seq[msg["stream"]] = seq + 1
        out.append({**msg, "seq": seq})
    return out


def _topic_bytes(topic: bytes | str) -> bytes:
    return topic.encode("utf-8") if isinstance(topic, str) else topic


def _subscriber(
    context: zmq.Context, endpoint: str, topic: bytes | str, curve: CurveKeys | None
) -> zmq.Socket:
    sock = context.socket(zmq.SUB)
    sock.linger = 0
    sock.ipv6 = True
    sock.rcvhwm = 0  # a test subscriber keeps everything it is sent
    if curve is not None:
        secure_client_socket(sock, *curve)
    sock.subscribe(_topic_bytes(topic))
    sock.connect(endpoint)
    return sock


def _receive(
    sock: zmq.Socket,
    deadline: float,
    until: Until | None,
    out: list[dict[str, Any]],
    problems: list[str],
    stop: threading.Event | None = None,
) -> None:
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or (stop is not None and stop.is_set()):
            return
        if not sock.poll(int(min(remaining, 0.05) * 1000) + 1):
            continue
        frames = sock.recv_multipart()
        try:
            msg = messages.decode(frames)
        except ValueError as exc:
            problems.append(f"undecodable message {frames[:2]!r}: {exc}")
            continue
        out.append(msg)
        if until is not None and until(msg):
            return


def _check(out: list[dict[str, Any]], problems: list[str]) -> list[dict[str, Any]]:
    for msg in out:
        validate(msg)
    if problems:
        raise AssertionError(f"{len(problems)} malformed message(s); first: {problems[0]}")
    return out


def collect(
    endpoint: str,
    seconds: float,
    topic: bytes | str = b"streamd",
    until: Until | None = None,
    *,
    curve: CurveKeys | None = None,
) -> list[dict[str, Any]]:
    """Subscribe to ``topic`` on ``endpoint`` for ``seconds`` (or until ``until(msg)`` is true)."""
    context = zmq.Context()
    out: list[dict[str, Any]] = []
    problems: list[str] = []
    sock = _subscriber(context, endpoint, topic, curve)
    try:
        _receive(sock, time.monotonic() + seconds, until, out, problems)
    finally:
        sock.close(linger=0)
        context.term()
    return _check(out, problems)


class Collector:
    """A background subscriber: ``start()``, run the code under test, then ``stop()`` -> messages."""

    def __init__(
        self,
        endpoint: str,
        topic: bytes | str = b"streamd",
        *,
        until: Until | None = None,
        seconds: float = 60.0,
        curve: CurveKeys | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.topic = topic
        self.until = until
        self.seconds = seconds
        self.curve = curve
        self._messages: list[dict[str, Any]] = []
        self._problems: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> Collector:
        """Connect and start receiving in a thread; returns self once the socket is connected."""
        self._thread = threading.Thread(target=self._run, name="test-collector", daemon=True)
        self._thread.start()
        self._ready.wait(5.0)
        if self._error is not None:
            raise self._error
        return self

    @property
    def messages(self) -> list[dict[str, Any]]:
        """A snapshot of what has arrived so far (not yet schema-checked)."""
        return list(self._messages)

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float) -> bool:
        """Poll until ``predicate(messages)`` holds or ``timeout`` passes; returns whether it held."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.messages):
                return True
            time.sleep(0.01)
        return predicate(self.messages)

    def stop(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Stop receiving and return every message, each validated against the schema."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise AssertionError("collector thread did not stop")
        if self._error is not None:
            raise self._error
        return _check(list(self._messages), self._problems)

    def _run(self) -> None:
        context = zmq.Context()
        try:
            sock = _subscriber(context, self.endpoint, self.topic, self.curve)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            context.term()
            return
        self._ready.set()
        try:
            deadline = time.monotonic() + self.seconds
            _receive(sock, deadline, self.until, self._messages, self._problems, self._stop)
        except BaseException as exc:
            self._error = exc
        finally:
            sock.close(linger=0)
            context.term()


SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
ESC50_CSV = SHARED / "data" / "esc50" / "meta" / "esc50.csv"


def esc50_categories() -> list[str]:
    """The 50 ESC-50 class names (real label names for test messages), in target order."""
    if not ESC50_CSV.exists():
        pytest.skip(f"ESC-50 metadata not found at {ESC50_CSV}", allow_module_level=True)
    with ESC50_CSV.open(newline="") as f:
        names = {int(row["target"]): row["category"] for row in csv.DictReader(f)}
    return [names[i] for i in sorted(names)]
