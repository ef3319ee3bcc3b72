"""Message sinks that run in the publisher thread: the JSON-lines printer behind ``--json``."""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, TextIO


class JsonLinesSink:
    """Writes every message as one JSON line (ASCII-safe) and flushes, so pipes see it at once."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()

    def __call__(self, msg: dict[str, Any]) -> None:
        line = json.dumps(msg, allow_nan=False, separators=(",", ":"))
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()
