"""What the MQTT sink says of its broker connection: each change once, as a warning.

A broker that is not there (a wrong port), refuses every retry alike, or goes away mid-run was silent
until messages were written off (or the run ended): the sink queues while it waits, so nothing else
showed it. Each failure is said when it starts (and not again while it lasts), and the connection made
after one is said too, so a journal shows when MQTT was down.
"""

from __future__ import annotations

import logging

log = logging.getLogger("streamd.mqtt_sink")


class ConnectionLog:
    """The broker connection's state changes, each logged once (``where``: host:port)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self._said = ""  # the failure last said; "" while connected (or not yet tried)

    def failed(self, why: str) -> None:
        """A connection attempt failed or was refused: said at the first failure of an outage (the retries
        fail alike)."""
        if not self._said:
            log.warning("MQTT broker %s: %s; retrying (messages wait in the queue)", self.where, why)
            self._said = why

    def lost(self, why: str) -> None:
        """A connection that was up went down."""
        self.failed(f"disconnected ({why})")

    def connected(self) -> None:
        """Connected: said when a failure had been said, else only at info level."""
        if self._said:
            log.warning("MQTT broker %s: connected again", self.where)
        else:
            log.info("MQTT connected to %s", self.where)
        self._said = ""
