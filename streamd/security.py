"""Who may bind where, and CURVE authentication for the publisher and its subscribers.

Rule: binding a loopback address (or ipc/inproc) is always allowed; binding anything else needs CURVE
(a server secret key plus a directory of allowed client public keys, checked by pyzmq's ZAP
authenticator) unless ``--insecure`` is given explicitly. Key files are ZeroMQ certificates made by
``zmq.auth.create_certificates`` (``NAME.key`` public, ``NAME.key_secret`` secret).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from streamd.errors import ConfigError, StreamdError
from streamd.path_args import path_arg

LOCAL_TRANSPORTS = ("ipc", "inproc")
_KEY_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


class SecurityError(StreamdError):
    """A bind or connect is refused by the security rules, or a key cannot be used."""


@dataclass
class Security:
    """How the publisher secures its socket; the default allows loopback binds only, in plain text."""

    insecure: bool = False
    server_secret_key: Path | None = None
    allowed_clients_dir: Path | None = None

    @property
    def curve(self) -> bool:
        """True when CURVE authentication is configured."""
        return self.server_secret_key is not None or self.allowed_clients_dir is not None


def add_security_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--insecure``, ``--curve-secret-key`` and ``--curve-allow-dir`` to a command that binds."""
    group = parser.add_argument_group("security")
    group.add_argument(
        "--insecure",
        action="store_true",
        help="allow binding a non-loopback address without CURVE (plain text: anyone can read)",
    )
    group.add_argument(
        "--curve-secret-key",
        type=path_arg,
        metavar="SECRETFILE",
        help="server secret key (NAME.key_secret from 'streamd keys'); enables CURVE",
    )
    group.add_argument(
        "--curve-allow-dir",
        type=path_arg,
        metavar="DIR",
        help="directory of allowed client public keys (*.key); needed with --curve-secret-key",
    )


def security_from_args(args: argparse.Namespace) -> Security:
    """The ``Security`` described by the arguments of ``add_security_arguments``."""
    return Security(
        insecure=bool(getattr(args, "insecure", False)),
        server_secret_key=getattr(args, "curve_secret_key", None),
        allowed_clients_dir=getattr(args, "curve_allow_dir", None),
    )


def endpoint_host(endpoint: str) -> tuple[str, str]:
    """``(transport, host)`` of an endpoint such as ``tcp://127.0.0.1:5556``; SecurityError if malformed."""
    transport, sep, rest = endpoint.partition("://")
    if not sep or not transport or not rest:
        raise SecurityError(
            f"invalid endpoint {endpoint!r}: expected TRANSPORT://ADDRESS, e.g. tcp://127.0.0.1:5556"
        )
    if transport in LOCAL_TRANSPORTS:
        return transport, ""
    host = rest.rpartition(":")[0] if ":" in rest else rest
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return transport, host


def is_loopback_endpoint(endpoint: str) -> bool:
    """True when binding ``endpoint`` exposes the socket to this machine only.

    Loopback IP literals (127.0.0.0/8, ::1), ``localhost``, ipc and inproc qualify; wildcards, other
    addresses, host and interface names do not (they may reach the network).
    """
    transport, host = endpoint_host(endpoint)
    if transport in LOCAL_TRANSPORTS:
        return True
    if transport != "tcp":
        return False
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def check_bind_allowed(endpoint: str, security: Security) -> None:
    """Raise SecurityError when binding ``endpoint`` with ``security`` breaks the rule."""
    if is_loopback_endpoint(endpoint) or security.curve or security.insecure:
        return
    raise SecurityError(
        f"refusing to bind {endpoint} without authentication: it is not a loopback address; "
        "give --curve-secret-key and --curve-allow-dir (see 'streamd keys'), or --insecure"
    )


def load_secret_key(path: Path) -> tuple[bytes, bytes]:
    """``(public, secret)`` Z85 keys from a secret key file; SecurityError if unusable."""
    public, secret = _load_certificate(path)
    if secret is None:
        raise SecurityError(f"{path} holds no secret key (use the NAME.key_secret file from 'streamd keys')")
    return public, secret


def load_public_key(path: Path) -> bytes:
    """The Z85 public key in a key file (public or secret); SecurityError if unusable."""
    return _load_certificate(path)[0]


def _load_certificate(path: Path) -> tuple[bytes, bytes | None]:
    path = Path(path)
    if path.is_dir():
        raise SecurityError(f"{path}: is a folder, not a key file")
    if not path.is_file():
        raise SecurityError(f"key file not found: {path}")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise SecurityError(f"cannot read key file {path}: {exc}") from None
    if len(public) != 40 or (secret is not None and len(secret) != 40):
        raise SecurityError(f"{path} is not a ZeroMQ CURVE key file")
    return public, secret


def load_allowed_clients(directory: Path) -> list[bytes]:
    """Public keys of every ``*.key`` file in ``directory``; SecurityError if none can be used."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise SecurityError(f"{directory}: is a file; give the folder of allowed clients' public keys")
    if not directory.is_dir():
        raise SecurityError(f"allowed client key directory not found: {directory}")
    keys = [load_public_key(path) for path in sorted(directory.glob("*.key"))]
    if not keys:
        raise SecurityError(f"no client public keys (*.key) in {directory}: no subscriber could connect")
    return keys


def check_curve_config(security: Security) -> None:
    """Raise ConfigError unless CURVE is either off or fully configured."""
    if security.curve and (security.server_secret_key is None or security.allowed_clients_dir is None):
        raise ConfigError("CURVE needs both --curve-secret-key and --curve-allow-dir")


def load_server_keys(security: Security) -> tuple[bytes, bytes] | None:
    """A CURVE server's ``(public, secret)`` keys, its allowed clients' folder checked too (ConfigError,
    SecurityError); None with CURVE off. What a bind loads, and ``--check`` (binding nothing) too."""
    check_curve_config(security)
    if security.server_secret_key is None or security.allowed_clients_dir is None:
        return None  # CURVE is off
    keys = load_secret_key(security.server_secret_key)
    load_allowed_clients(security.allowed_clients_dir)
    return keys


def load_client_keys(server_public_key: Path, client_secret_key: Path) -> tuple[bytes, bytes, bytes]:
    """A CURVE client's ``(server public, own public, own secret)`` keys; SecurityError if unusable."""
    return (load_public_key(server_public_key), *load_secret_key(client_secret_key))


def secure_server_socket(
    context: zmq.Context, socket: zmq.Socket, security: Security
) -> ThreadAuthenticator | None:
    """Make ``socket`` a CURVE server admitting only the allowed clients (call before bind); the running
    authenticator (stop it after closing the socket), or None when CURVE is off."""
    keys = load_server_keys(security)
    if keys is None:
        return None
    socket.curve_publickey, socket.curve_secretkey = keys
    socket.curve_server = True
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location=str(security.allowed_clients_dir))
    return auth


def apply_server_keys(socket: zmq.Socket, security: Security) -> None:
    """Make ``socket`` a CURVE server with the configured key (another socket of a context whose
    authenticator ``secure_server_socket`` already started; call before bind)."""
    assert security.server_secret_key is not None
    socket.curve_publickey, socket.curve_secretkey = load_secret_key(security.server_secret_key)
    socket.curve_server = True


def secure_client_socket(socket: zmq.Socket, server_public_key: Path, client_secret_key: Path) -> None:
    """Make ``socket`` a CURVE client of the server whose public key file is given (call before connect)."""
    keys = load_client_keys(server_public_key, client_secret_key)
    socket.curve_serverkey, socket.curve_publickey, socket.curve_secretkey = keys


def create_key_pair(directory: Path, name: str = "streamd", *, force: bool = False) -> tuple[Path, Path]:
    """Write ``NAME.key`` (public) and ``NAME.key_secret`` (secret, mode 0600) into ``directory``."""
    if not _KEY_NAME_RE.fullmatch(name):
        raise SecurityError(f"invalid key name {name!r}: use letters, digits, '.', '_' or '-'")
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SecurityError(f"cannot create key directory {directory}: {exc.strerror}") from None
    public_path, secret_path = directory / f"{name}.key", directory / f"{name}.key_secret"
    if not force:
        for path in (public_path, secret_path):
            if path.exists():
                raise SecurityError(f"{path} already exists (use --force to replace it)")
    try:
        # Create both files with their final modes first so the secret is never readable by others.
        for path, mode in ((secret_path, 0o600), (public_path, 0o644)):
            path.unlink(missing_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode))
        zmq.auth.create_certificates(directory, name)
    except OSError as exc:
        raise SecurityError(f"cannot write key files in {directory}: {exc.strerror}") from None
    return public_path, secret_path


HANDSHAKE_FAILURE_EVENTS = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


def handshake_problem(
    event: int, value: int, endpoint: str, *, curve: bool, peer: str = "publisher"
) -> str | None:
    """A one-line explanation of a failed handshake seen by a connecting socket's monitor (a subscriber's,
    or a daemon's connected to a ``peer`` "proxy"), else None."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return f"the {peer} at {endpoint} rejected this client's key (CURVE authentication failed)"
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        if curve:
            return f"the {peer} at {endpoint} does not use CURVE: drop the --curve-* options"
        return (
            f"the {peer} at {endpoint} requires CURVE authentication: "
            "give --curve-server-key and --curve-secret-key"
        )
    if event in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
        need = "it probably requires CURVE authentication (give --curve-server-key and --curve-secret-key)"
        hint = "check that it uses CURVE and that --curve-server-key is its public key" if curve else need
        return f"the handshake with the {peer} at {endpoint} failed: {hint}"
    return None


# A handshake that fails without detail (the connection closed during it) is what a publisher going away
# or restarting looks like, as well as a CURVE peer refusing the keys: it is reported only once it keeps
# failing, this many times in a row over at least this long, with no handshake succeeding in between.
HANDSHAKE_RETRIES = 3
HANDSHAKE_GRACE_S = 1.0


class HandshakeWatch:
    """Decides which handshake events a connecting socket reports (a subscriber's, a daemon's connected to
    a proxy): a rejected key or a mechanism mismatch at once, a failure without detail only when it
    persists (``HANDSHAKE_RETRIES``, ``HANDSHAKE_GRACE_S``)."""

    EVENTS = HANDSHAKE_FAILURE_EVENTS | zmq.EVENT_HANDSHAKE_SUCCEEDED  # the socket monitor's mask

    def __init__(self, endpoint: str, *, curve: bool, peer: str = "publisher") -> None:
        self.endpoint, self.curve, self.peer = endpoint, curve, peer
        self._failures, self._first_failure = 0, 0.0

    def observe(self, event: int, value: int, now: float) -> str | None:
        """The problem to report for this monitor event (seen at monotonic time ``now``), or None."""
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._failures = 0
            return None
        problem = handshake_problem(event, value, self.endpoint, curve=self.curve, peer=self.peer)
        if problem is None or event != zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            return problem
        if self._failures == 0:
            self._first_failure = now
        self._failures += 1
        persists = now - self._first_failure >= HANDSHAKE_GRACE_S
        return problem if self._failures >= HANDSHAKE_RETRIES and persists else None
