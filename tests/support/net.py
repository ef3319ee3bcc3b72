"""Watching TCP sockets on this machine (Linux /proc), and a subscriber that never reads."""

from __future__ import annotations

import time
from pathlib import Path

import zmq

_STATES = {"listen": "0A", "established": "01"}


def tcp_sockets(port: int, state: str) -> int:
    """How many local TCP sockets on ``port`` (IPv4 and IPv6) are in ``state`` ("listen"/"established")."""
    code = _STATES[state]
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == code:
                count += 1
    return count


def wait_for_sockets(port: int, state: str, n: int, timeout: float) -> bool:
    """Poll until at least ``n`` sockets on ``port`` are in ``state``; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tcp_sockets(port, state) >= n:
            return True
        time.sleep(0.05)
    return False


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


class StalledSubscriber:
    """A SUB socket that subscribes to everything and never reads, with the smallest buffers it can have."""

    def __init__(self, endpoint: str) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.rcvhwm = 1
        self.socket.rcvbuf = 4096
        self.socket.linger = 0
        self.socket.subscribe(b"")
        self.socket.connect(endpoint)

    def close(self) -> None:
        self.socket.close(linger=0)
        self.context.term()

    def __enter__(self) -> StalledSubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
