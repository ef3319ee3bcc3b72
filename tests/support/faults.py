"""Things that fail on purpose, for driving ``streamd.daemon.Daemon`` directly.

- ``FlakySource``: a live source that plays real audio at real-time pace (or a multiple) and, at a
  chosen point, errors out (as a device that disappears) or goes silent (a stalled device); reopening
  it fails until its outage is over, then it carries on where it stopped.
- ``SlowModel`` / ``FailingModel``: wrap a loaded classifier to make each window cost time, or to raise
  on chosen model calls.
- ``collecting_publisher()``: the real ``Publisher`` on a private inproc endpoint, every message it
  sends also appended to a list.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from models import WindowedClassifier
from streamd.model_loading import LoadedModel
from streamd.publisher import Publisher
from streamd.ring import SampleRing
from streamd.sources import Source

INJECTED = "injected fault"


@dataclass
class Outage:
    """At ``at_s`` of audio the device fails (``kind`` "error" or "stall") for ``duration_s`` of wall time."""

    at_s: float
    duration_s: float
    kind: str = "error"
    began: float | None = None  # monotonic time it began
    ended: float | None = None  # monotonic time the device was successfully reopened


@dataclass
class FlakySource(Source):
    """A live source of ``audio`` (mono, ``sample_rate``) that fails as its ``outages`` say."""

    audio: np.ndarray
    sample_rate: int
    outages: list[Outage] = field(default_factory=list)
    speed: float = 1.0
    block_s: float = 0.02
    name: str = "flaky"
    live: bool = True

    def __post_init__(self) -> None:
        self.channels = 1
        self.block = max(1, round(self.block_s * self.sample_rate))
        self.ring = SampleRing(round(10.0 * self.sample_rate), 1)
        self.error: str | None = None
        self.restarts = 0
        self.restart_times: list[float] = []  # monotonic time of every reopen attempt
        self.position = 0  # samples written so far
        self._open = threading.Event()  # the "device" delivers only while open
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending = sorted(self.outages, key=lambda o: o.at_s)
        self._current: Outage | None = None

    # -- Source interface ------------------------------------------------------------------------------

    def start(self) -> None:
        self._open.set()
        self._thread = threading.Thread(target=self._run, name="test-flaky-source", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._open.set()
        self.ring.close()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def restart(self) -> None:
        """Reopen. During an error outage this fails (sets ``error``); during a stall it "succeeds" but
        the device stays silent; once the outage is over the audio flows again from where it stopped."""
        now = time.monotonic()
        self.restarts += 1
        self.restart_times.append(now)
        outage = self._current
        if outage is not None and outage.began is not None and now < outage.began + outage.duration_s:
            if outage.kind == "error":
                self.error = f"cannot open input device {self.name!r}: {INJECTED} (device unavailable)"
            return
        if outage is not None:
            outage.ended = now
        self._current = None
        self.error = None
        self._open.set()

    # -- the "device" ----------------------------------------------------------------------------------

    def _run(self) -> None:
        started = time.monotonic()
        paused_s = 0.0
        while not self._stop.is_set() and self.position < len(self.audio):
            if not self._open.is_set():
                closed_at = time.monotonic()
                self._open.wait()
                paused_s += time.monotonic() - closed_at
                continue
            if self._pending and self.position >= round(self._pending[0].at_s * self.sample_rate):
                self._fail(self._pending.pop(0))
                continue
            due = started + paused_s + (self.position + self.block) / self.sample_rate / self.speed
            delay = due - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
                continue
            block = self.audio[self.position : self.position + self.block]
            self.ring.write(block[:, None])
            self.position += len(block)
        if self.position >= len(self.audio):
            self.ring.close()  # the recording is over: the stream ends

    def _fail(self, outage: Outage) -> None:
        outage.began = time.monotonic()
        self._current = outage
        self._open.clear()
        if outage.kind == "error":
            self.error = f"input device {self.name!r} stopped unexpectedly: {INJECTED}"


class SlowModel(WindowedClassifier):
    """``inner`` that takes ``seconds_per_window`` longer per window: a model slower than real time."""

    def __init__(self, inner: torch.nn.Module, seconds_per_window: float) -> None:
        super().__init__()
        self.inner = inner
        self.seconds_per_window = seconds_per_window
        self.calls = 0

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        time.sleep(self.seconds_per_window * fbank.shape[0])
        return self.inner(fbank)


class FailingModel(WindowedClassifier):
    """``inner`` that raises ``RuntimeError`` on the model calls numbered in ``fail_calls``, counted from 0
    after the first ``skip`` calls (set it to the engine's ``warm_up_calls``: then call k is window k of a
    single stream scored one window per call)."""

    def __init__(self, inner: torch.nn.Module, fail_calls: Container[int], skip: int = 0) -> None:
        super().__init__()
        self.inner = inner
        self.fail_calls = fail_calls
        self.skip = skip
        self.calls = 0

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        call, self.calls = self.calls - self.skip, self.calls + 1
        if call >= 0 and call in self.fail_calls:
            raise RuntimeError(f"{INJECTED} in model call {call}")
        return self.inner(fbank)


class AfterWarmUp(Container[int]):
    """Every call after the skipped ones (the daemon's warm-up): a model that fails on every window."""

    def __contains__(self, item: object) -> bool:
        return isinstance(item, int) and item >= 0


def wrapped(loaded: LoadedModel, make: Callable[[torch.nn.Module], torch.nn.Module]) -> LoadedModel:
    """A copy of ``loaded`` whose model is ``make(original model)``."""
    return LoadedModel(
        make(loaded.model), loaded.info, loaded.name, loaded.device, loaded.precision, loaded.path
    )


def collecting_publisher(queue_size: int = 100_000) -> tuple[Publisher, list[dict[str, Any]]]:
    """A real publisher on a private inproc endpoint, and the list every sent message is appended to."""
    sent: list[dict[str, Any]] = []
    publisher = Publisher(f"inproc://test-{uuid.uuid4().hex}", queue_size=queue_size)
    publisher.add_sink(sent.append)
    return publisher, sent
