"""A daemon's side of fan-in: ``--connect-proxy`` (the PUB connects to a ``streamd proxy`` frontend instead
of binding) and ``--stream-prefix`` (stream names unique per host: ``PREFIX-NAME``, by default the host
name when publishing to a proxy)."""

from __future__ import annotations

import argparse
import socket
from typing import Any

from streamd import messages
from streamd.errors import ConfigError
from streamd.path_args import path_arg
from streamd.security import security_from_args

MAX_PREFIX_CHARS = messages.MAX_STREAM_CHARS // 2  # the rest is the source's own name


def add_fanin_arguments(parser: argparse.ArgumentParser) -> None:
    """``--connect-proxy``, ``--stream-prefix`` and ``--curve-server-key`` for run / replay."""
    group = parser.add_argument_group("fan-in (streamd proxy)")
    group.add_argument(
        "--connect-proxy",
        metavar="ENDPOINT",
        help="publish to a 'streamd proxy' frontend (connect) instead of binding --publish",
    )
    group.add_argument(
        "--stream-prefix",
        metavar="PREFIX",
        help="prefix of every stream name (default with --connect-proxy: this host's name)",
    )
    group.add_argument(
        "--curve-server-key",
        type=path_arg,
        metavar="PUBFILE",
        help="the proxy's public key (with --connect-proxy; --curve-secret-key is then this daemon's key)",
    )


def stream_prefix(args: argparse.Namespace) -> str | None:
    """The prefix to give stream names, or None."""
    prefix = getattr(args, "stream_prefix", None)
    if prefix is not None and not messages.stream_name(prefix, fallback=""):
        raise ConfigError(f"--stream-prefix {prefix!r} has no letter or digit to name streams with")
    if prefix is not None and len(messages.stream_name(prefix)) > MAX_PREFIX_CHARS:
        raise ConfigError(
            f"--stream-prefix: at most {MAX_PREFIX_CHARS} characters (stream names hold "
            f"{messages.MAX_STREAM_CHARS}, and the source's own name follows it), got {len(prefix)}"
        )
    if prefix is None and getattr(args, "connect_proxy", None):
        prefix = socket.gethostname().split(".")[0][:MAX_PREFIX_CHARS]
    return None if prefix is None else messages.stream_name(prefix)


def prefixed(name: str, prefix: str | None) -> str:
    """``PREFIX-NAME`` (a valid stream name), or ``name`` without a prefix."""
    return name if prefix is None else messages.stream_name(f"{prefix}-{name}")


def apply_stream_prefix(args: argparse.Namespace, sources: list[Any]) -> None:
    """Rename ``sources`` (objects with a ``name``) by the prefix of ``args``."""
    prefix = stream_prefix(args)
    for source in sources:
        source.name = prefixed(source.name, prefix)


def make_publisher(
    args: argparse.Namespace, endpoint: str, queue_size: int, sndhwm: int = 10_000, block: bool = False
) -> Any:
    """The daemon's publisher: binding ``endpoint``, or connecting to ``--connect-proxy``; ``block``: it
    waits for room rather than dropping (the ``block`` overload policy, a replay's)."""
    from streamd.publisher import Publisher

    proxy = getattr(args, "connect_proxy", None)
    server_key = getattr(args, "curve_server_key", None)
    if proxy is None:
        if server_key is not None:
            raise ConfigError("--curve-server-key goes with --connect-proxy")
        security = security_from_args(args)
        return Publisher(endpoint, security=security, queue_size=queue_size, sndhwm=sndhwm, block=block)
    if getattr(args, "publish", None) is not None:
        raise ConfigError("--publish and --connect-proxy exclude each other: the proxy's subscribers listen")
    if getattr(args, "curve_allow_dir", None) is not None:
        raise ConfigError("--curve-allow-dir is for binding; with --connect-proxy the proxy checks keys")
    client_secret = getattr(args, "curve_secret_key", None)
    if (server_key is None) != (client_secret is None):
        raise ConfigError("with --connect-proxy, --curve-server-key and --curve-secret-key go together")
    keys = None if server_key is None else (server_key, client_secret)
    return Publisher(proxy, queue_size=queue_size, sndhwm=sndhwm, connect=True, client_keys=keys, block=block)
