"""The subscriptions an XPUB socket has seen (``streamd.publisher``): whether anyone is listening."""

from __future__ import annotations

import threading

import zmq


class Subscriptions:
    """Counts subscribe (``\\x01prefix``) and unsubscribe (``\\x00prefix``) frames per prefix; ``any`` is set
    while at least one subscription is open."""

    def __init__(self) -> None:
        self.counts: dict[bytes, int] = {}
        self.any = threading.Event()

    def read(self, sock: zmq.Socket) -> None:
        """Take every subscription frame waiting on ``sock`` (never blocks)."""
        while sock.poll(0, zmq.POLLIN):
            frame = sock.recv()
            if not frame:
                continue
            prefix = frame[1:]
            if frame[0] == 1:
                self.counts[prefix] = self.counts.get(prefix, 0) + 1
            elif frame[0] == 0 and self.counts.get(prefix, 0) > 0:
                self.counts[prefix] -= 1
                if not self.counts[prefix]:
                    del self.counts[prefix]
            if self.counts:
                self.any.set()
            else:
                self.any.clear()
