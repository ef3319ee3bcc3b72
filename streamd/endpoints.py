"""ZeroMQ endpoints as streamd takes them: the transports it binds and connects, and the one-line reasons
for the errors ZeroMQ gives."""

from __future__ import annotations

import errno
import os

from streamd.errors import StreamdError

BIND_TRANSPORTS = ("tcp", "ipc", "inproc")


class PublishError(StreamdError):
    """The publisher cannot bind its endpoint."""


BIND_ERRORS = {
    errno.EADDRINUSE: "address already in use (is another streamd running? choose another port)",
    errno.EINVAL: "invalid endpoint (expected e.g. tcp://127.0.0.1:5556)",
    errno.EPROTONOSUPPORT: "unsupported transport (use tcp://, ipc:// or inproc://)",
    errno.ENODEV: "no such address or interface on this machine",
    errno.EADDRNOTAVAIL: "address not available on this machine",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
}


def bind_reason(code: int) -> str:
    """Why a bind failed with ``errno`` ``code``, in one line (streamd's words where it has them)."""
    return BIND_ERRORS.get(code) or os.strerror(code)


def check_endpoint(endpoint: str, action: str = "bind") -> None:
    """Raise PublishError unless ``endpoint`` is a tcp (port or ``*``), ipc or inproc endpoint one can
    ``action`` ("bind" or "connect to")."""
    transport, sep, rest = endpoint.partition("://")
    if not sep or not rest:
        raise PublishError(f"cannot {action} {endpoint}: {BIND_ERRORS[errno.EINVAL]}")
    if transport not in BIND_TRANSPORTS:
        raise PublishError(f"cannot {action} {endpoint}: {BIND_ERRORS[errno.EPROTONOSUPPORT]}")
    if transport == "tcp":
        host, colon, port = rest.rpartition(":")
        if not (host and colon and (port == "*" or (port.isdigit() and int(port) <= 65535))):
            raise PublishError(f"cannot {action} {endpoint}: {BIND_ERRORS[errno.EINVAL]}")
