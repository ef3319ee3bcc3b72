"""``--check``'s trial binds: would the run's publish endpoint and metrics port bind? Each is bound on a
throwaway socket and released at once. A port in use is not an error here (the running service being
checked beside may hold it): it is said; any other reason the run would fail to bind is the run's error.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import zmq

from streamd.endpoints import PublishError, bind_reason
from streamd.errors import ConfigError
from streamd.net_address import host_port

IN_USE = "in use (a running streamd may hold it); not bound by the check"


def probe_endpoint(endpoint: str) -> str | None:
    """``IN_USE`` or None for a ``tcp://`` endpoint bound and released; an ``ipc://`` one's folder must
    exist and be writable (a trial bind would take over a running daemon's socket file); PublishError as
    the run gives it otherwise."""
    transport, _, rest = endpoint.partition("://")
    if transport == "ipc" and rest.startswith("@"):  # Linux's abstract namespace: no file, no folder
        return None
    if transport == "ipc":
        folder = Path(rest).parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            code = errno.EACCES if folder.is_dir() else errno.ENOENT  # as the bind would say
            raise PublishError(f"cannot bind {endpoint}: {bind_reason(code)}")
        return None
    if transport != "tcp":
        return None
    context = zmq.Context()
    sock = context.socket(zmq.XPUB)
    try:
        sock.linger = 0
        sock.ipv6 = "://[" in endpoint
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        if exc.errno == errno.EADDRINUSE:
            return IN_USE
        raise PublishError(f"cannot bind {endpoint}: {bind_reason(exc.errno)}") from None
    finally:
        sock.close(linger=0)
        context.term()
    return None


def probe_listen(host: str, port: int, option: str) -> str | None:
    """``IN_USE`` or None for an HTTP listening address (``--metrics``); ConfigError as the run gives it."""
    where = host_port(host, port)
    try:  # the address family and address as the HTTP server picks them (its first getaddrinfo answer)
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP server does
            sock.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return IN_USE
        raise ConfigError(f"{option}: cannot listen on {where} ({exc.strerror})") from None
    return None
