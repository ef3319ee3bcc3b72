"""Bind rules and CURVE authentication on real sockets: good, bad and missing client keys; key creation."""

from __future__ import annotations

import argparse
import shutil
import stat
import time
from pathlib import Path

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message
from zmq_helpers import Collector, numbered

from streamd import cli, messages
from streamd.errors import ConfigError
from streamd.publisher import Publisher
from streamd.security import (
    HANDSHAKE_FAILURE_EVENTS,
    Security,
    SecurityError,
    add_security_arguments,
    check_bind_allowed,
    create_key_pair,
    handshake_problem,
    is_loopback_endpoint,
    load_allowed_clients,
    load_public_key,
    load_secret_key,
    secure_client_socket,
    security_from_args,
)

WALL = 1_700_000_000.0


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """A server key pair, an allowed client ('good') and a client nobody allowed ('bad')."""
    allow = tmp_path / "allowed"
    for name in ("server", "good", "bad", "other_server"):
        create_key_pair(tmp_path, name)
    allow.mkdir()
    shutil.copy(tmp_path / "good.key", allow / "good.key")
    return {
        "dir": tmp_path,
        "allow": allow,
        "server_public": tmp_path / "server.key",
        "server_secret": tmp_path / "server.key_secret",
        "good_secret": tmp_path / "good.key_secret",
        "bad_secret": tmp_path / "bad.key_secret",
        "other_server_public": tmp_path / "other_server.key",
    }


def _curve(keys: dict[str, Path]) -> Security:
    return Security(server_secret_key=keys["server_secret"], allowed_clients_dir=keys["allow"])


def _events(n: int, stream: str = "mic") -> list[dict]:
    return [messages.event(stream, "dog", "start", i, i + 5, 0.9, wall_time=WALL) for i in range(n)]


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("tcp://127.0.0.1:5556", True),
        ("tcp://127.8.9.10:1", True),
        ("tcp://[::1]:5556", True),
        ("tcp://[::ffff:127.0.0.1]:5556", True),
        ("tcp://localhost:5556", True),
        ("ipc://streamd.ipc", True),
        ("inproc://streamd", True),
        ("tcp://0.0.0.0:5556", False),
        ("tcp://*:5556", False),
        ("tcp://[::]:5556", False),
        ("tcp://192.168.1.20:5556", False),
        ("tcp://eth0:5556", False),
        ("tcp://example.org:5556", False),
        ("ws://127.0.0.1:5556", False),
    ],
)
def test_loopback_detection(endpoint: str, loopback: bool) -> None:
    assert is_loopback_endpoint(endpoint) is loopback
    if loopback:
        check_bind_allowed(endpoint, Security())
    else:
        with pytest.raises(SecurityError, match="refusing to bind"):
            check_bind_allowed(endpoint, Security())
        check_bind_allowed(endpoint, Security(insecure=True))


def test_non_loopback_bind_needs_curve_or_insecure(keys: dict[str, Path]) -> None:
    refused = Publisher("tcp://0.0.0.0:*")
    with pytest.raises(SecurityError) as info:
        refused.start()
    assert str(info.value) == (
        "refusing to bind tcp://0.0.0.0:* without authentication: it is not a loopback address; "
        "give --curve-secret-key and --curve-allow-dir (see 'streamd keys'), or --insecure"
    )
    for security, curve in ((Security(insecure=True), None), (_curve(keys), keys)):
        pub = Publisher("tcp://0.0.0.0:*", security=security)
        pub.start()
        try:
            port = pub.endpoint.rsplit(":", 1)[1]
            client = None if curve is None else (keys["server_public"], keys["good_secret"])
            collector = Collector(f"tcp://127.0.0.1:{port}", curve=client).start()
            assert pub.wait_for_subscriber(5.0)
            sent = _events(3)
            for msg in sent:
                pub.publish(msg)
            assert collector.wait_for(lambda got: len(got) == 3, 5.0)
            assert collector.stop() == numbered(sent)
        finally:
            pub.stop()


def test_curve_admits_only_allowed_client_keys(keys: dict[str, Path]) -> None:
    pub = Publisher("tcp://127.0.0.1:*", security=_curve(keys))  # CURVE on loopback when asked for
    pub.start()
    try:
        good = Collector(pub.endpoint, curve=(keys["server_public"], keys["good_secret"])).start()
        bad = Collector(pub.endpoint, curve=(keys["server_public"], keys["bad_secret"])).start()
        wrong_server = Collector(
            pub.endpoint, curve=(keys["other_server_public"], keys["good_secret"])
        ).start()
        plain = Collector(pub.endpoint).start()
        assert pub.wait_for_subscriber(5.0)
        time.sleep(0.2)  # every handshake (and rejection) has happened by now
        sent = _events(20)
        for msg in sent:
            pub.publish(msg)
        assert good.wait_for(lambda got: len(got) == 20, 5.0)
        time.sleep(0.2)
        assert good.stop() == numbered(sent)
        assert bad.stop() == []
        assert wrong_server.stop() == []
        assert plain.stop() == []
    finally:
        pub.stop()


def test_rejected_key_is_reported_by_the_socket_monitor(keys: dict[str, Path]) -> None:
    pub = Publisher("tcp://127.0.0.1:*", security=_curve(keys))
    pub.start()
    context = zmq.Context()
    try:
        seen = {}
        for name in ("good_secret", "bad_secret"):
            sock = context.socket(zmq.SUB)
            sock.linger = 0
            secure_client_socket(sock, keys["server_public"], keys[name])
            monitor = sock.get_monitor_socket(HANDSHAKE_FAILURE_EVENTS)
            sock.connect(pub.endpoint)
            seen[name] = monitor.poll(2000 if name == "bad_secret" else 300)
            if seen[name]:
                event = recv_monitor_message(monitor)
                problem = handshake_problem(event["event"], event["value"], pub.endpoint, curve=True)
                rejected = "rejected this client's key (CURVE authentication failed)"
                assert problem == f"the publisher at {pub.endpoint} {rejected}"
            sock.disable_monitor()
            monitor.close()
            sock.close()
        assert seen == {"good_secret": False, "bad_secret": True}
    finally:
        context.destroy(linger=0)
        pub.stop()


def test_handshake_problem_messages() -> None:
    ep = "tcp://127.0.0.1:5556"
    mismatch = zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
    assert "requires CURVE" in handshake_problem(
        zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, mismatch, ep, curve=False
    )
    assert "does not use CURVE" in handshake_problem(
        zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, mismatch, ep, curve=True
    )
    assert "public key" in handshake_problem(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, 32, ep, curve=True)
    assert "requires CURVE" in handshake_problem(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, 32, ep, curve=False)
    assert handshake_problem(zmq.EVENT_CONNECTED, 0, ep, curve=True) is None


def test_curve_configuration_errors(keys: dict[str, Path], tmp_path: Path) -> None:
    half = Publisher("tcp://127.0.0.1:*", security=Security(server_secret_key=keys["server_secret"]))
    with pytest.raises(ConfigError, match="needs both --curve-secret-key and --curve-allow-dir"):
        half.start()
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (
            Security(server_secret_key=keys["server_secret"], allowed_clients_dir=empty),
            "no client public keys",
        ),
        (
            Security(server_secret_key=keys["server_public"], allowed_clients_dir=keys["allow"]),
            "holds no secret",
        ),
        (
            Security(server_secret_key=tmp_path / "nope", allowed_clients_dir=keys["allow"]),
            "key file not found",
        ),
        (
            Security(server_secret_key=keys["server_secret"], allowed_clients_dir=tmp_path / "x"),
            "allowed client key directory not found",
        ),
        (
            Security(server_secret_key=empty, allowed_clients_dir=keys["allow"]),
            "is a folder, not a key file",
        ),
        (
            Security(server_secret_key=keys["server_secret"], allowed_clients_dir=keys["server_public"]),
            "is a file; give the folder of allowed clients' public keys",
        ),
    ]
    for security, match in cases:
        with pytest.raises(SecurityError, match=match):
            Publisher("tcp://127.0.0.1:*", security=security).start()
    garbage = tmp_path / "garbage.key"
    garbage.write_text("public-key = 'short'\n")
    with pytest.raises(SecurityError, match="not a ZeroMQ CURVE key file"):
        load_public_key(garbage)


def test_create_key_pair_files_and_permissions(tmp_path: Path) -> None:
    public, secret = create_key_pair(tmp_path / "new" / "dir", "client-1")
    assert (public.name, secret.name) == ("client-1.key", "client-1.key_secret")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert load_public_key(public) == load_secret_key(secret)[0]
    assert "secret-key" not in public.read_text()
    assert load_allowed_clients(public.parent) == [load_public_key(public)]
    old_key = load_public_key(public)
    with pytest.raises(SecurityError, match="already exists"):
        create_key_pair(public.parent, "client-1")
    assert load_public_key(public) == old_key
    create_key_pair(public.parent, "client-1", force=True)
    assert load_public_key(public) != old_key and load_secret_key(secret)[0] == load_public_key(public)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    with pytest.raises(SecurityError, match="invalid key name"):
        create_key_pair(tmp_path, "../escape")


def test_keys_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["keys", str(tmp_path), "--name", "server"]) == 0
    out = capsys.readouterr().out.splitlines()
    public_key = load_public_key(tmp_path / "server.key").decode()
    assert out[0] == f"public key: {tmp_path / 'server.key'}  ({public_key})"
    assert out[1].startswith(f"secret key: {tmp_path / 'server.key_secret'}")
    assert cli.main(["keys", str(tmp_path), "--name", "server"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        captured.err
        == f"streamd: error: {tmp_path / 'server.key'} already exists (use --force to replace it)\n"
    )


def test_security_arguments() -> None:
    parser = argparse.ArgumentParser()
    add_security_arguments(parser)
    assert security_from_args(parser.parse_args([])) == Security()
    args = parser.parse_args(
        ["--insecure", "--curve-secret-key", "s.key_secret", "--curve-allow-dir", "allowed"]
    )
    assert security_from_args(args) == Security(True, Path("s.key_secret"), Path("allowed"))
    assert security_from_args(args).curve
