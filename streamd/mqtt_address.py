"""Where an MQTT sink publishes: the broker URL (``mqtt://HOST[:PORT][/PREFIX]``, ``mqtts://...``), the
topic prefixes, the client and node ids and the credentials, checked at start-up so that settings that
could never work are one line, not a broker that refuses every connection (or drops every message) later."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from streamd.config_sections import MqttSection
from streamd.errors import ConfigError
from streamd.mqtt_discovery import node_slug

DEFAULT_PREFIX = MqttSection.prefix  # "streamd"

DEFAULT_PORT = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    prefix: str | None  # from the URL path, if any


def parse_url(url: str) -> BrokerAddress:
    """``mqtt://HOST[:PORT][/PREFIX]`` or ``mqtts://...``; ConfigError when malformed."""
    try:
        parts = urlsplit(url.strip())
        hostname, port = parts.hostname, parts.port
    except ValueError as exc:  # e.g. an unclosed [IPv6 bracket, a port out of range
        raise ConfigError(f"--mqtt: {exc} in {url!r}") from None
    if parts.scheme not in DEFAULT_PORT or not hostname:
        raise ConfigError(f"--mqtt: expected mqtt://HOST:PORT[/PREFIX], got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            "--mqtt: give the user name and password as [mqtt] username / password, not in the URL "
            "(where process lists show them)"
        )
    if "#" in url or "?" in url:  # a URL's fragment or query: never part of the path the prefix is taken from
        raise ConfigError(f"--mqtt: {url!r} holds '#' or '?': not a topic prefix one can publish to")
    if port == 0:  # a broker listens on a real port; 0 is not "the default"
        raise ConfigError(f"--mqtt: port 0 in {url!r}: give the broker's port (default 1883, mqtts 8883)")
    prefix = parts.path.strip("/") or None
    if prefix is not None:
        check_topic_prefix("--mqtt (the URL's path)", prefix)
    return BrokerAddress(hostname, port or DEFAULT_PORT[parts.scheme], parts.scheme == "mqtts", prefix)


MAX_UTF8_BYTES = 65535  # an MQTT string's length field: a client id, a topic
MAX_PREFIX_BYTES = MAX_UTF8_BYTES // 2  # room for the stream, label and kind after it


def check_topic_prefix(where: str, prefix: str) -> None:
    """A topic prefix brokers accept for publishing: not empty (topics would begin with ``/``), no
    wildcards (``+``, ``#``), no NUL, not ``$...``, short enough for MQTT's string length."""
    if not prefix.strip("/"):
        raise ConfigError(f"{where}: empty, so topics would begin with '/'; give a prefix such as 'streamd'")
    if len(prefix.encode("utf-8")) > MAX_PREFIX_BYTES:
        raise ConfigError(
            f"{where}: {len(prefix.encode())} bytes long; at most {MAX_PREFIX_BYTES} (an MQTT topic holds "
            f"{MAX_UTF8_BYTES}, and the stream, label and kind follow the prefix)"
        )
    if any(c in prefix for c in "+#\x00"):
        raise ConfigError(f"{where}: {prefix!r} is not a topic prefix one can publish to (no + or #)")
    if prefix.strip("/").startswith("$"):  # $SYS/...: the broker drops what clients publish there
        raise ConfigError(
            f"{where}: {prefix!r} begins with '$': such topics are the broker's own, not for clients"
        )


def check_settings(cfg: MqttSection, address: BrokerAddress) -> tuple[str, str]:
    """The ``[mqtt]`` settings beside the URL: its topic prefixes and credentials. The topic prefix (the
    URL's path wins over ``prefix``) and the discovery prefix, each without a leading or trailing ``/``."""
    if address.prefix is None:
        check_topic_prefix("mqtt.prefix", cfg.prefix)
    if cfg.discovery:  # nothing is published under it otherwise
        check_topic_prefix("mqtt.discovery_prefix", cfg.discovery_prefix)
    if len(cfg.client_id.encode("utf-8")) > MAX_UTF8_BYTES:
        raise ConfigError(
            f"mqtt.client_id: {len(cfg.client_id.encode())} bytes; MQTT allows at most {MAX_UTF8_BYTES}"
        )
    if cfg.password and not cfg.username:  # MQTT sends a password only with a user name
        raise ConfigError("mqtt.password is set without mqtt.username: MQTT sends a password only with one")
    return (address.prefix or cfg.prefix).strip("/"), cfg.discovery_prefix.strip("/")


def check_url_prefix(values: dict[str, Any]) -> None:
    """``url`` with a path and ``prefix`` set together (one config file): they must name the same prefix
    (a URL that does not parse is said when the sink is built)."""
    if "url" not in values or "prefix" not in values:
        return
    try:
        from_url = parse_url(values["url"]).prefix
    except ConfigError:
        return
    # the default spelled out (as the sample config does) leaves the URL's path the prefix, as documented
    if from_url is not None and values["prefix"].strip("/") not in (from_url, DEFAULT_PREFIX):
        raise ConfigError(
            f"mqtt.prefix {values['prefix']!r} contradicts the path of mqtt.url ({from_url!r}): give the "
            "topic prefix in one of them"
        )


def client_ids(cfg: MqttSection) -> tuple[str, str]:
    """The connection's client id and the Home Assistant node id (``client_id``, else defaults)."""
    # the broker lets one connection per client id: two daemons of a host must not share the default
    # (at most 23 characters, the length every MQTT 3.1.1 broker must accept)
    client_id = cfg.client_id or f"streamd_{os.getpid()}_{secrets.token_hex(3)}"[:23]
    return client_id, node_slug(cfg.client_id or f"streamd-{socket.gethostname()}")


def configure_client(client: Any, cfg: MqttSection, address: BrokerAddress, availability: str) -> None:
    """Give a paho ``client`` the user name and password, TLS (``tls``, ``mqtts://``) with ``ca_file`` or
    the system's CA certificates, ``offline`` on ``availability`` as its last will, and its reconnect
    backoff (1 s doubling up to ``reconnect_max_s``)."""
    client.will_set(availability, "offline", qos=1, retain=True)
    client.reconnect_delay_set(min_delay=1, max_delay=max(1, round(cfg.reconnect_max_s)))
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.password or None)
    if cfg.tls or address.tls:
        try:
            client.tls_set(ca_certs=cfg.ca_file or None)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            what = f"mqtt.ca_file {cfg.ca_file}" if cfg.ca_file else "mqtt.tls"
            raise ConfigError(f"{what}: {getattr(exc, 'strerror', None) or exc}") from None
