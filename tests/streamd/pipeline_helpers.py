"""Run the daemon in-process with the integrations on, collecting every message it publishes."""

from __future__ import annotations

import threading
import urllib.request
import uuid
from typing import Any

from streamd.config import DaemonConfig
from streamd.daemon import Daemon
from streamd.integrations import Integrations, attach
from streamd.model_loading import LoadedModel
from streamd.publisher import Publisher
from streamd.sources import Source


def scrape_metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One HTTP scrape of the metrics endpoint: (sample name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


class Pipeline:
    """A daemon over ``sources`` with a real (inproc) publisher; ``messages`` is filled as they are sent."""

    def __init__(self, cfg: DaemonConfig, sources: list[Source], model: LoadedModel) -> None:
        self.messages: list[dict[str, Any]] = []
        self.publisher = Publisher(f"inproc://streamd-test-{uuid.uuid4().hex}", queue_size=1_000_000)
        self.publisher.add_sink(self.messages.append)  # first: the list holds all a later sink has seen
        self.daemon = Daemon(cfg, sources, model, self.publisher)
        self.integrations: Integrations = attach(cfg, self.daemon, self.publisher)
        self.stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_to_end(self) -> None:
        try:
            self.daemon.run_until_done()
        finally:
            self.integrations.close()

    def start_live(self) -> None:
        self._thread = threading.Thread(target=self.daemon.run_forever, args=(self.stop,), daemon=True)
        self._thread.start()

    def stop_live(self) -> None:
        self.stop.set()
        assert self._thread is not None
        self._thread.join(30)
        self.integrations.close()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in list(self.messages) if m["type"] == kind]
