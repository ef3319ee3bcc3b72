"""Starting and stopping the daemon's stages: in order, and in reverse, each join bounded.

A stage is anything with a ``name``, ``start()``, ``stop()`` (ask it to end; never blocks) and
``join(timeout) -> bool`` (True once it has ended). ``Stages`` starts them in the order given and stops
the started ones in reverse: ``stop()`` then ``join(timeout)`` for each. A stage that has not ended within
its timeout is reported (returned by ``stop_all``, for the caller to say once) and shutdown goes on with
the next one, so one stuck stage never hangs the daemon (its threads are daemon threads). ``EngineStage`` and
``SourcesStage`` adapt the engine and the sources to this protocol.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from streamd.engine import Engine
from streamd.sources import Source

log = logging.getLogger(__name__)


class Stage(Protocol):
    """One stage of the pipeline (see the module docstring)."""

    name: str

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def join(self, timeout: float) -> bool: ...


class ThreadStage:
    """A stage that is one daemon thread running ``_run`` (named ``streamd-<name>``)."""

    name = "stage"

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None

    def _run(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"streamd-{self.name}", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> bool:
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class Stages:
    """Stages started in order and stopped in reverse, each joined with ``join_timeout_s``."""

    def __init__(self, join_timeout_s: float) -> None:
        self.join_timeout_s = join_timeout_s
        self.started: list[Stage] = []

    def start(self, stage: Stage) -> None:
        """Start ``stage``; it will be stopped before every stage started earlier."""
        stage.start()
        self.started.append(stage)

    def stop_all(self) -> list[str]:
        """Stop the started stages in reverse order; a line for each that did not end in time."""
        stuck: list[str] = []
        while self.started:
            stage = self.started.pop()
            t0 = time.monotonic()
            try:
                stage.stop()
            except Exception as exc:  # one failing stop must not keep the others running
                log.exception("stopping %s failed", stage.name)
                stuck.append(f"stopping the {stage.name} stage failed: {type(exc).__name__}: {exc}")
                continue
            if not stage.join(self.join_timeout_s):
                waited = time.monotonic() - t0
                # said once, by the caller (the daemon's warnings at exit); a log line too said it twice
                stuck.append(f"the {stage.name} stage did not stop within {waited:.1f} s (left behind)")
        return stuck


class EngineStage:
    """The engine as a stage: ``stop`` closes its input (it classifies what is queued, then ends; on
    Ctrl-C the daemon has already abandoned the queue)."""

    name = "engine"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def start(self) -> None:
        self.engine.start()

    def stop(self) -> None:
        self.engine.close()

    def join(self, timeout: float) -> bool:
        return self.engine.join(timeout)


class SourcesStage:
    """Every source as one stage (started together, joined within one timeout)."""

    name = "sources"

    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources

    def start(self) -> None:
        for source in self.sources:
            source.start()

    def stop(self) -> None:
        for source in self.sources:
            source.stop()

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all([s.join(max(0.0, deadline - time.monotonic())) for s in self.sources])
