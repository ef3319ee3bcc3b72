"""How streamd writes a network address in messages: ``HOST:PORT``, an IPv6 host in brackets."""

from __future__ import annotations


def host_port(host: str, port: int) -> str:
    """``127.0.0.1:9109``, ``[::1]:9109``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
