"""Fan-in through ``streamd proxy``: three daemons replaying real audio into one proxy, one subscriber hearing
every stream under a unique name (subscriptions forwarded: the daemons wait for it through the proxy), the
capture file, and CURVE through the proxy (good and bad keys on both sides)."""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from support.fixtures import free_tcp_port
from support.process import StreamdProcess
from support.tiny_disk import tiny_tmpfs
from zmq_helpers import Collector, collect

from streamd import messages
from streamd.cli import main
from streamd.errors import ConfigError
from streamd.fanin import make_publisher, prefixed, stream_prefix
from streamd.proxy import Proxy
from streamd.publisher import Publisher, PublishError
from streamd.security import Security, SecurityError, create_key_pair

SR = 16000


def endpoint() -> str:
    return f"tcp://127.0.0.1:{free_tcp_port()}"


def _until(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll until ``condition()`` holds (True) or ``timeout`` passes (False): a generous bound, for a
    loaded machine, on what a quiet one does in milliseconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def _subscribed(publisher: Publisher, prefix: bytes) -> bool:
    """Whether a subscription to ``prefix`` has come through to ``publisher`` (``b""``: the proxy's own,
    for its capture; ``b"streamd"``: a ``Collector``'s, through the proxy). ``wait_for_subscriber`` says
    only that there is some subscription, which the capture's is as soon as the daemon connects."""
    return prefix in publisher._subscriptions.counts


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory, esc50) -> Path:
    """About 9 s of two real clips: five windows of 5 s every 1 s."""
    wave = np.concatenate([esc50.read_mono(p) for p in esc50.clips(2)])[: 9 * SR]
    path = tmp_path_factory.mktemp("audio") / "field.wav"
    sf.write(path, wave, SR, subtype="FLOAT")
    return path


@pytest.mark.slow
def test_three_daemons_one_subscriber_unique_names(tmp_path, recording, small_checkpoint):
    frontend, backend, capture = endpoint(), endpoint(), tmp_path / "capture.jsonl"
    proxy_args = ["proxy", "--frontend", frontend, "--backend", backend, "--capture", capture]
    prefixes = ["north", "south", None]  # the third takes the default: this host's name
    with StreamdProcess(proxy_args) as proxy:
        proxy.start()
        assert proxy.wait_for(lambda p: "subscribers ->" in p.stderr_text(), 30), proxy.stderr_text()
        collector = Collector(backend, seconds=240).start()
        daemons = []
        for prefix in prefixes:
            args = ["replay", recording, "--speed", "max", "--connect-proxy", frontend, "--no-dashboard"]
            args += ["--checkpoint", small_checkpoint, "--wait-subscriber", "60", "--status-interval", "60"]
            daemons.append(StreamdProcess([*args, *(["--stream-prefix", prefix] if prefix else [])]).start())
        for daemon in daemons:
            result = daemon.wait(240)
            assert result.returncode == 0, result.describe()
        host = messages.stream_name(socket.gethostname().split(".")[0])
        names = {f"north-{recording.stem}", f"south-{recording.stem}", f"{host}-{recording.stem}"}

        def finished(msgs: list[dict]) -> bool:
            return {m["stream"] for m in msgs if m.get("state") == "finished"} == names

        assert collector.wait_for(finished, 30)
        received = collector.stop()
        proxy.send_signal()
        proxy_result = proxy.wait(30)
    assert proxy_result.returncode == 0, proxy_result.describe()
    assert {m["stream"] for m in received} == names
    for name in names:
        windows = [
            (m["t_start"], m["t_end"]) for m in received if m["stream"] == name and m["type"] == "prediction"
        ]
        assert windows == [(float(k), k + 5.0) for k in range(5)], name
    captured = [json.loads(line) for line in capture.read_text().splitlines()]
    assert sorted(map(json.dumps, captured)) == sorted(map(json.dumps, received))
    assert f"captured {len(captured)} message(s)" in proxy_result.stderr


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """The proxy's key pair, an allowed client ('good', daemons and subscribers alike) and a stranger."""
    allow = tmp_path / "allowed"
    for name in ("proxy", "good", "bad"):
        create_key_pair(tmp_path, name)
    allow.mkdir()
    shutil.copy(tmp_path / "good.key", allow / "good.key")
    return {"allow": allow, **{p.name.replace(".", "_"): p for p in tmp_path.glob("*.key*")}}


def _publish_until_heard(
    publisher: Publisher, backend: str, curve: tuple[Path, Path] | None, n: int, expect_failure: bool = False
) -> list[dict]:
    """Publish ``n`` events every 50 ms to a subscriber of ``backend``, once its subscription has come
    through the proxy, until it has heard them all; what it heard. With ``expect_failure`` (nothing comes
    through, so nothing can be waited for): published after 0.5 s, what came within a second more, and
    then up to 10 s more for the publisher's ``failure``."""
    bodies = [messages.event("north-mic", "dog", "start", i, i + 5, 0.9) for i in range(n)]
    out: list[dict] = []
    publisher.start()
    try:
        collector = Collector(backend, seconds=300, curve=curve).start()
        if expect_failure:
            time.sleep(0.5)
        else:
            assert _until(lambda: _subscribed(publisher, b"streamd")), "no subscription came through"
        for body in bodies:
            publisher.publish(body)
            time.sleep(0.05)
        if expect_failure:
            time.sleep(1.0)
        else:
            assert collector.wait_for(lambda heard: len(heard) >= n, 60), collector.messages
        out = collector.stop()
        deadline = time.monotonic() + 10.0  # a refusal may follow a few attempts without detail
        while expect_failure and publisher.failure is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        publisher.stop()
    return out


def test_curve_through_the_proxy(keys, caplog):
    frontend, backend = endpoint(), endpoint()
    security = Security(server_secret_key=keys["proxy_key_secret"], allowed_clients_dir=keys["allow"])
    proxy = Proxy(frontend, backend, security=security)
    proxy.start()
    try:
        good_client = (keys["proxy_key"], keys["good_key_secret"])
        bad_client = (keys["proxy_key"], keys["bad_key_secret"])
        good = Publisher(frontend, connect=True, client_keys=good_client)
        heard = _publish_until_heard(good, backend, good_client, 5)
        assert [m["t_start"] for m in heard] == [0.0, 1.0, 2.0, 3.0, 4.0] and good.failure is None
        # A daemon whose key the proxy does not allow is never forwarded, and its publisher says so.
        bad = Publisher(frontend, connect=True, client_keys=bad_client)
        assert _publish_until_heard(bad, backend, good_client, 5, expect_failure=True) == []
        assert (
            bad.failure == f"the proxy at {frontend} rejected this client's key (CURVE authentication failed)"
        )
        # A subscriber whose key the proxy does not allow hears nothing.
        assert collect(backend, 1.0, curve=bad_client) == []
        # Plain text is refused on both sides.
        caplog.clear()
        plain = Publisher(frontend, connect=True)
        assert _publish_until_heard(plain, backend, good_client, 3, expect_failure=True) == []
        # libzmq names the mechanism mismatch (fatal), or on a loaded machine the proxy may drop the
        # connection first, a failure without detail (warned, never fatal): either way CURVE is named
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        said = [plain.failure or "", *warned]
        assert any("requires CURVE" in line for line in said), said
    finally:
        proxy.stop()


def test_a_daemon_whose_key_the_proxy_rejects_fails_in_one_line(keys, recording, small_checkpoint):
    """It published into nothing for as long as it ran, exit 0: now one line and a non-zero exit."""
    frontend, backend = endpoint(), endpoint()
    security = Security(server_secret_key=keys["proxy_key_secret"], allowed_clients_dir=keys["allow"])
    proxy = Proxy(frontend, backend, security=security)
    proxy.start()
    try:
        args = ["replay", recording, "--connect-proxy", frontend, "--checkpoint", small_checkpoint]
        args += ["--no-dashboard", "--curve-server-key", keys["proxy_key"]]
        with StreamdProcess([*args, "--curve-secret-key", keys["bad_key_secret"]]) as daemon:
            result = daemon.start().wait(60)
    finally:
        proxy.stop()
    assert result.returncode == 1, result.describe()
    assert f"streamd: error: the proxy at {frontend} rejected this client's key" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_proxy_behind_a_forwarder_that_is_down_is_not_fatal(caplog) -> None:
    """A TCP forwarder (ssh -L, docker-proxy) accepts and closes while the proxy behind it is down: the
    handshake fails without detail, over and over. That is said once, never ends the daemon's run."""
    import logging
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    closing = threading.Event()

    def accept_and_close() -> None:
        listener.settimeout(0.1)
        while not closing.is_set():
            try:
                listener.accept()[0].close()
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_and_close, daemon=True)
    thread.start()
    publisher = Publisher(f"tcp://127.0.0.1:{port}", connect=True)
    with caplog.at_level(logging.WARNING):
        publisher.start()
        try:
            # said once the failures persist (3 in 1 s or more): then a second more of failures, unsaid
            assert _until(lambda: any("(still trying)" in r.getMessage() for r in list(caplog.records)))
            time.sleep(1.0)
            assert publisher.failure is None
        finally:
            publisher.stop()
            closing.set()
            thread.join(5)
            listener.close()
    assert sum("(still trying)" in r.getMessage() for r in caplog.records) == 1, caplog.records


def test_a_proxy_that_never_answers_is_said_while_waiting_and_at_the_end(monkeypatch, caplog) -> None:
    """Nothing listening at --connect-proxy: ZeroMQ retries without a word and the run published into
    nothing, exit 0, stderr empty. Now a note once it has waited, and the run's failure at the end (the
    daemon's error line, exit 1); neither with a proxy."""
    import logging

    import streamd.connection_watch

    monkeypatch.setattr(streamd.connection_watch, "NO_PUBLISHER_NOTE_S", 0.5)
    nobody = endpoint()
    with caplog.at_level(logging.WARNING):
        publisher = Publisher(nobody, connect=True)
        publisher.start()
        try:
            assert _until(lambda: any("has answered" in r.getMessage() for r in list(caplog.records)))
        finally:
            publisher.stop()
    said = [r.getMessage() for r in caplog.records]
    assert sum(f"no proxy has answered at {nobody} yet" in line for line in said) == 1, said
    assert publisher.failure == f"no proxy ever answered at {nobody}: nothing published reached it"
    caplog.clear()
    proxy = Proxy(endpoint(), endpoint())
    proxy.start()
    try:
        with caplog.at_level(logging.WARNING):
            publisher = Publisher(proxy.endpoints[0], connect=True)
            publisher.start()
            time.sleep(1.5)
            publisher.stop()
    finally:
        proxy.stop()
    assert not [r for r in caplog.records if "answered" in r.getMessage()], caplog.records
    assert publisher.failure is None


def test_a_replay_whose_proxy_never_answers_fails(small_checkpoint, esc50, capsys) -> None:
    """What a replay published reached no one: exit 1 and the one line, not exit 0 under a warning."""
    nobody = endpoint()
    args = ["replay", str(esc50.clips(1)[0]), "--speed", "max", "--connect-proxy", nobody, "--no-dashboard"]
    assert main([*args, "--checkpoint", str(small_checkpoint)]) == 1
    err = capsys.readouterr().err
    assert f"streamd: error: no proxy ever answered at {nobody}: nothing published reached it" in err, err


def _publish_through(proxy: Proxy, n: int) -> list[dict]:
    """``n`` events published through ``proxy`` while a subscriber listens; what it heard."""
    proxy.start()
    try:
        frontend, backend = proxy.endpoints
        heard = _publish_until_heard(Publisher(frontend, connect=True), backend, None, n)
    finally:
        proxy.stop()
    return heard


def test_a_failing_capture_stops_capturing_not_forwarding() -> None:
    """A full disk (``/dev/full``) under the capture file: every message is still forwarded, the capture
    stops at the first write error with its reason, and what it could not write is counted."""
    proxy = Proxy(endpoint(), endpoint(), capture=Path("/dev/full"))
    heard = _publish_through(proxy, 5)
    assert [m["t_start"] for m in heard] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert proxy.capture_error == "No space left on device"
    assert (proxy.captured, proxy.not_captured) == (0, 5)


def _publish_quickly(
    frontend: str, n: int, through: Callable[[], bool], subscriptions: tuple[bytes, ...] = (b"",)
) -> None:
    """``n`` events published to ``frontend`` at once, once ``subscriptions`` have come through the proxy
    (``b""``: its own, for the capture: no subscriber needed); returns once ``through()`` says they have
    all passed the proxy."""
    publisher = Publisher(frontend, connect=True)
    publisher.start()
    try:
        arrived = _until(lambda: all(_subscribed(publisher, prefix) for prefix in subscriptions))
        assert arrived, f"subscriptions {subscriptions} did not come through the proxy"
        for i in range(n):
            publisher.publish(messages.event("north-mic", "dog", "start", i, i + 5, 0.9))
        assert publisher.flush(30.0)
        assert _until(through), f"the {n} messages did not all pass the proxy"
    finally:
        publisher.stop()


def _whole_lines(capture: Path) -> list[dict]:
    """The capture's lines, each a whole JSON line (a torn last line fails here)."""
    text = capture.read_text()
    assert text.endswith("\n"), text[-200:]
    return [json.loads(line) for line in text.splitlines()]


def test_a_capture_that_fills_the_disk_ends_with_its_last_whole_line(tmp_path: Path) -> None:
    """A real full disk (an 8-KB tmpfs) cut the line being written: the file held a torn, invalid last
    line the count left out. It is cut back to the last whole line; the counts are unchanged."""
    with tiny_tmpfs(tmp_path / "full", size="8k") as disk:
        capture = disk / "capture.jsonl"
        proxy = Proxy(endpoint(), endpoint(), capture=capture)
        proxy.start()
        try:
            # every message reached the capture thread, written or counted as not
            _publish_quickly(proxy.endpoints[0], 80, lambda: proxy.captured + proxy.not_captured >= 80)
        finally:
            proxy.stop()
        assert proxy.capture_error == "No space left on device"
        full = capture.stat().st_size % 4096 == 0  # the last whole line just filled it: nothing to cut
        assert proxy.capture_trimmed != full
        lines = _whole_lines(capture)
    assert 0 < proxy.captured == len(lines) and proxy.captured + proxy.not_captured == 80
    assert [m["t_start"] for m in lines] == list(range(proxy.captured))


def test_the_proxy_command_on_a_full_disk_leaves_whole_lines_and_says_so(tmp_path: Path) -> None:
    """End to end: ``streamd proxy --capture`` on a full disk, real messages through it, Ctrl-C."""
    frontend, backend = endpoint(), endpoint()
    with tiny_tmpfs(tmp_path / "full", size="8k") as disk:
        capture = disk / "capture.jsonl"
        capture.write_text('{"an earlier run, cut short\n')  # kept as it was: only this run's line goes
        args = ["proxy", "--frontend", frontend, "--backend", backend, "--capture", capture]
        with StreamdProcess(args) as proxy:
            proxy.start()
            assert proxy.wait_for(lambda p: "subscribers ->" in p.stderr_text(), 30), proxy.stderr_text()
            # the proxy copies each message to the capture before it forwards it: a subscriber that heard
            # all 80 says the capture holds them all (its thread takes in all it holds before it stops)
            collector = Collector(backend, seconds=300).start()
            try:
                _publish_quickly(
                    frontend, 80, lambda: len(collector.messages) >= 80, subscriptions=(b"", b"streamd")
                )
            finally:
                collector.stop()
            proxy.send_signal()
            result = proxy.wait(30)
        lines = capture.read_text().splitlines()
        full = capture.stat().st_size % 4096 == 0  # the last whole line just filled it: nothing to cut
    assert result.returncode == 1, result.describe()
    captured = len(lines) - 1
    assert [json.loads(line)["t_start"] for line in lines[1:]] == list(range(captured))
    said = result.stderr_lines[-1]
    assert said.startswith(f"streamd proxy: captured {captured} message(s) to {capture}; "), said
    assert f"(No space left on device): {80 - captured} message(s) not captured" in said
    assert ("(the line it cut short was removed: the file ends with the last whole line)" in said) != full


def test_the_capture_file_is_appended_to(tmp_path: Path) -> None:
    """A proxy restarted with the same capture file adds to it, keeping what earlier runs recorded."""
    capture = tmp_path / "capture.jsonl"
    capture.write_text('{"cut short by a full dis')  # an earlier run stopped mid-line: not merged into
    for _ in range(2):
        proxy = Proxy(endpoint(), endpoint(), capture=capture)
        assert len(_publish_through(proxy, 3)) == 3
        assert proxy.capture_error is None and proxy.captured == 3
    lines = capture.read_text().splitlines()
    assert lines[0] == '{"cut short by a full dis'
    assert [json.loads(line)["t_start"] for line in lines[1:]] == [0.0, 1.0, 2.0] * 2


def test_the_capture_records_every_message_whoever_listens(tmp_path: Path) -> None:
    """The capture is the full record: with no subscriber at all, and after a subscriber of everything
    has come and gone (its unsubscription must not end the proxy's own)."""
    capture = tmp_path / "capture.jsonl"
    proxy = Proxy(endpoint(), endpoint(), capture=capture)
    proxy.start()
    publisher = Publisher(proxy.endpoints[0], connect=True)
    publisher.start()
    try:
        assert _until(lambda: _subscribed(publisher, b""))  # connected, the proxy's subscription passed on
        for i in range(3):
            publisher.publish(messages.event("north-mic", "dog", "start", i, i + 5, 0.9))
        collector = Collector(proxy.endpoints[1], seconds=300).start()
        assert _until(lambda: _subscribed(publisher, b"streamd"))  # it came...
        collector.stop()
        assert _until(lambda: not _subscribed(publisher, b"streamd"))  # ...and went, through the proxy
        for i in range(3, 6):
            publisher.publish(messages.event("north-mic", "dog", "start", i, i + 5, 0.9))
        assert _until(lambda: proxy.captured >= 6), proxy.captured
    finally:
        publisher.stop()
        proxy.stop()
    assert proxy.captured == 6
    assert [json.loads(line)["t_start"] for line in capture.read_text().splitlines()] == list(range(6))


def test_stream_prefix_rules(monkeypatch):
    class Args:
        connect_proxy = "tcp://127.0.0.1:5557"
        stream_prefix = None
        curve_server_key = None
        curve_secret_key = None
        curve_allow_dir = None

    monkeypatch.setattr(socket, "gethostname", lambda: "field-unit.example.org")
    assert stream_prefix(Args()) == "field-unit"
    assert prefixed("mic", stream_prefix(Args())) == "field-unit-mic"
    Args.stream_prefix = "site 4/b"
    assert prefixed("mic", stream_prefix(Args())) == "site_4_b-mic"
    Args.connect_proxy, Args.stream_prefix = None, None
    assert stream_prefix(Args()) is None and prefixed("mic", None) == "mic"
    Args.connect_proxy, Args.curve_server_key = "tcp://127.0.0.1:5557", Path("proxy.key")
    with pytest.raises(ConfigError, match="go together"):
        make_publisher(Args(), "tcp://127.0.0.1:5556", 10)


def test_proxy_bind_errors():
    first = Proxy(endpoint(), endpoint())
    first.start()
    try:
        with pytest.raises(PublishError, match=r"cannot bind .*in use"):
            Proxy(first.endpoints[0], endpoint()).start()
    finally:
        first.stop()
    with pytest.raises(SecurityError, match="refusing to bind"):
        Proxy("tcp://0.0.0.0:5599", endpoint()).start()
