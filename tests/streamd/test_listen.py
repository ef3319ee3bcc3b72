"""``streamd listen`` against real publishers: JSON lines, topics, limits, signals, CURVE and bad input."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from zmq_helpers import esc50_categories, validate

from streamd import cli, messages
from streamd.publisher import Publisher
from streamd.security import Security, create_key_pair

REPO = Path(__file__).resolve().parents[2]
WALL = 1_700_000_000.0


class Feeder:
    """Publishes numbered predictions (and an event every 5th) every few ms until stopped."""

    def __init__(self, pub: Publisher, stream: str = "mic") -> None:
        self.pub, self.stream = pub, stream
        self.labels = esc50_categories()[:3]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            pairs = [(name, 0.9 - 0.2 * j) for j, name in enumerate(self.labels)]
            msg = messages.prediction(self.stream, i, i + 5, "m", pairs, 1.0, window_index=i, wall_time=WALL)
            self.pub.publish(msg)
            if i % 5 == 4:
                self.pub.publish(messages.event(self.stream, self.labels[0], "start", i, i + 5, 0.9))
            i += 1
            time.sleep(0.005)

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)


@pytest.fixture
def publisher() -> Iterator[Publisher]:
    pub = Publisher("tcp://127.0.0.1:*")
    pub.start()
    yield pub
    pub.stop()


def _lines(text: str) -> list[dict]:
    out = [json.loads(line) for line in text.splitlines()]
    for msg in out:
        validate(msg)
    return out


def test_a_count_not_reached_in_time_is_exit_1_and_a_silent_publisher_can_be_told(
    publisher: Publisher, capsys: pytest.CaptureFixture[str]
) -> None:
    """``listen --count 5 --seconds 1`` with a publisher that sends nothing exited 0, so a health check
    could not tell a live daemon from a dead one; only ``--seconds`` alone is a plain time limit."""
    argv = ["listen", "--connect", publisher.endpoint, "--seconds", "1"]
    assert cli.main([*argv, "--count", "5"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"streamd listen: error: only 0 of 5 message(s) from {publisher.endpoint}"]  # one line
    assert cli.main(argv) == 0
    with Feeder(publisher):
        assert cli.main([*argv[:3], "--count", "3", "--seconds", "30"]) == 0


def test_prints_count_messages_as_json_lines(
    publisher: Publisher, capsys: pytest.CaptureFixture[str]
) -> None:
    with Feeder(publisher):
        assert cli.main(["listen", "--connect", publisher.endpoint, "--count", "12"]) == 0
    captured = capsys.readouterr()
    got = _lines(captured.out)
    assert len(got) == 12 and captured.err == ""
    windows = [m["window_index"] for m in got if m["type"] == "prediction"]
    assert windows == list(range(windows[0], windows[0] + len(windows)))  # consecutive: nothing lost
    assert {m["type"] for m in got} == {"prediction", "event"}


def test_topic_prefix_filters(capsys: pytest.CaptureFixture[str]) -> None:
    pub = Publisher("tcp://127.0.0.1:*")
    pub.start()
    try:
        with Feeder(pub, "a"), Feeder(pub, "b"):
            argv = ["listen", "--connect", pub.endpoint, "--topic", "streamd.b.event", "--count", "3"]
            assert cli.main(argv) == 0
    finally:
        pub.stop()
    captured = capsys.readouterr()
    got = _lines(captured.out)
    assert [(m["stream"], m["type"]) for m in got] == [("b", "event")] * 3
    # b's predictions were left out by the filter, not lost: no gap is reported, and it says why
    assert "missed" not in captured.err and "losses are not counted" in captured.err


def test_only_prefixes_that_select_message_types_turn_gap_counting_off() -> None:
    from streamd.commands.listen import selects_types

    assert selects_types(["streamd.mic.event"]) and selects_types(["streamd", "streamd.mic.e"])
    assert not selects_types(["streamd"]) and not selects_types(["streamd.mic."])
    assert not selects_types(["streamd.mi"]) and not selects_types([])


def test_no_publisher_is_said_once_and_a_bad_endpoint_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["listen", "--connect", "tcp://127.0.0.1:9", "--seconds", "5.5"]) == 0
    err = capsys.readouterr().err
    assert err.count("no publisher at tcp://127.0.0.1:9 yet (still trying") == 1, err
    for endpoint, why in [
        ("tcp://127.0.0.1:99999", "invalid endpoint"),
        ("udp://127.0.0.1:5", "unsupported transport"),
        ("tcp://127.0.0.1:*", "give the publisher's port"),
        ("inproc://x", "inproc:// is within one process"),
    ]:
        assert cli.main(["listen", "--connect", endpoint, "--seconds", "1"]) == 2
        err = capsys.readouterr().err
        assert why in err and err.count("\n") == 1, err


def test_seconds_limit_without_a_publisher(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    assert cli.main(["listen", "--connect", "tcp://127.0.0.1:9", "--seconds", "0.5"]) == 0
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 2.0
    out = capsys.readouterr()
    assert out.out == "" and out.err == "streamd listen: no message received from tcp://127.0.0.1:9\n"


SHARED_WARNING = (
    "streamd listen: warning: the seq of stream {} goes back and forth: two publishers seem to share the "
    "stream name (give each daemon its own --stream-prefix or source name); its losses cannot be counted"
)


def test_two_publishers_of_one_stream_name_are_warned_about_once() -> None:
    """Two daemons publishing one stream name through a proxy: ``seq`` went 0, 0, 1, 1, ... and every step
    back was taken for a restarted daemon, so neither's losses were counted, and nothing was said. Now one
    warning for that stream; a stream whose daemon restarted once (back to 0, then rising) is not.

    Lockstep, so the order the listener sees does not hang on timing: each message is published once the
    listener has printed the one before (the two publishers' ``seq`` do interleave; the restarted run's
    ``seq`` 0 comes after the old run's last message)."""
    from streamd.proxy import Proxy

    proxy = Proxy("tcp://127.0.0.1:*", "tcp://127.0.0.1:*")
    proxy.start()
    frontend, backend = proxy.endpoints
    first, second, restarted = (Publisher(frontend, connect=True) for _ in range(3))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "streamd", "listen", "--connect", backend, "--count", "40"]
    lines: queue.Queue[str | None] = queue.Queue()
    printed: list[dict] = []
    proc = subprocess.Popen(
        [*argv, "--seconds", "60"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def read_lines() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def send(pub: Publisher, stream: str, i: int) -> None:
        pub.publish(messages.event(stream, "dog", "start", i, i + 5, 0.9))
        line = lines.get(timeout=60)  # the listener printed it: the next one goes after it
        assert line is not None, "the listener ended early"
        printed.append(json.loads(line))

    reader = threading.Thread(target=read_lines, daemon=True)
    try:
        reader.start()
        for pub in (first, second, restarted):
            pub.start()
        for pub in (first, second, restarted):
            assert pub.wait_for_subscriber(60)  # the listener's subscription came through the proxy
        for i in range(10):
            send(first, "vm-mix20", i)
            send(second, "vm-mix20", i)
            send(first, "vm-other", i)
        for i in range(10):  # a new run of vm-other's daemon, after the old run's last message
            send(restarted, "vm-other", i)
        assert proc.wait(60) == 0
        reader.join(10)
        assert proc.stderr is not None
        err = proc.stderr.read()
    finally:
        proc.kill()
        proc.wait(10)
        for pub in (first, second, restarted):
            pub.stop()
        proxy.stop()
    for msg in printed:
        validate(msg)
    assert [m["seq"] for m in printed if m["stream"] == "vm-mix20"] == [k // 2 for k in range(20)]
    assert [m["seq"] for m in printed if m["stream"] == "vm-other"] == [*range(10), *range(10)]
    assert err.splitlines() == [SHARED_WARNING.format("vm-mix20")]


def test_a_gap_seen_before_a_stream_is_found_shared_is_left_out_of_the_total(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The second publisher's first message jumping ahead (``seq`` 0, 100, 1, 101) printed a 99-message gap,
    and at exit ``missed 99 message(s) in 1 gap(s)`` beside the warning that the stream's losses cannot
    be counted. The gap line was printed before the stream could be told shared; the total takes that
    jump back and says so, while another stream's gap still counts."""
    context = zmq.Context()
    raw = context.socket(zmq.XPUB)  # sees the listener's subscription: nothing is sent before it
    raw.linger = 0
    raw.bind("tcp://127.0.0.1:*")
    endpoint = raw.last_endpoint.decode()
    sent = [("vm", 0), ("ok", 0), ("vm", 100), ("ok", 3), ("vm", 1), ("vm", 101), ("vm", 2), ("vm", 150)]

    def feed() -> None:
        if raw.poll(60_000):
            raw.recv()
            for stream, seq in sent:
                msg = messages.event(stream, "dog", "start", 0, 5, 0.9, wall_time=WALL)
                raw.send_multipart(messages.encode(messages.with_seq(msg, seq)))

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        argv = ["listen", "--connect", endpoint, "--count", str(len(sent)), "--seconds", "60"]
        assert cli.main(argv) == 0
    finally:
        feeder.join(5.0)
        raw.close()
        context.term()
    out, err = capsys.readouterr()
    assert [(m["stream"], m["seq"]) for m in _lines(out)] == sent
    assert err.splitlines() == [
        "streamd listen: missed 99 message(s) of stream vm (seq 1-99)",  # printed as seen: it stays
        "streamd listen: missed 2 message(s) of stream ok (seq 1-2)",
        SHARED_WARNING.format("vm"),
        "streamd listen: missed 2 message(s) in 1 gap(s), stream(s) vm counted only until two publishers "
        "were found to share the name (1 gap(s) printed there were a second publisher's numbers)",
    ]


def test_sigint_stops_cleanly(publisher: Publisher, capsys: pytest.CaptureFixture[str]) -> None:
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    with Feeder(publisher):
        timer.start()
        started = time.monotonic()
        assert cli.main(["listen", "--connect", publisher.endpoint, "--seconds", "10"]) == 0
    assert time.monotonic() - started < 3.0
    assert len(_lines(capsys.readouterr().out)) > 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_sigterm_stops_the_process_with_exit_0(publisher: Publisher) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "streamd", "listen", "--connect", publisher.endpoint]
    with Feeder(publisher):
        proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            first = proc.stdout.readline()  # blocks until the subscriber works (process start included)
            validate(json.loads(first))
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=10)
        finally:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0 and err == ""
    _lines(out)


@pytest.mark.parametrize("dashboard", [False, True], ids=["json", "dashboard"])
def test_output_that_cannot_be_written_stops_the_listener_with_one_line(
    publisher: Publisher, dashboard: bool
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "streamd", "listen", "--connect", publisher.endpoint, "--count", "5"]
    argv += ["--dashboard"] if dashboard else []
    with Feeder(publisher), open("/dev/full", "w") as full:
        done = subprocess.run(
            argv, cwd=REPO, env=env, stdout=full, stderr=subprocess.PIPE, text=True, timeout=60
        )
    why = "the dashboard could not write its output" if dashboard else "cannot write the messages"
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"streamd listen: error: {why}: No space left on device"]


def test_dashboard_mode_renders_the_labels(publisher: Publisher, capsys: pytest.CaptureFixture[str]) -> None:
    with Feeder(publisher):
        assert cli.main(["listen", "--connect", publisher.endpoint, "--dashboard", "--count", "20"]) == 0
    out = capsys.readouterr().out
    for name in esc50_categories()[:3]:
        assert name in out
    assert "mic" in out and "latency 1.0 ms" in out


@pytest.fixture
def curve_publisher(tmp_path: Path) -> Iterator[tuple[Publisher, Path]]:
    for name in ("server", "good", "bad"):
        create_key_pair(tmp_path, name)
    allow = tmp_path / "allowed"
    allow.mkdir()
    shutil.copy(tmp_path / "good.key", allow)
    pub = Publisher("tcp://127.0.0.1:*", security=Security(False, tmp_path / "server.key_secret", allow))
    pub.start()
    yield pub, tmp_path
    pub.stop()


def test_curve_good_key_receives(curve_publisher, capsys: pytest.CaptureFixture[str]) -> None:
    pub, keys = curve_publisher
    argv = ["listen", "--connect", pub.endpoint, "--count", "5"]
    argv += [
        "--curve-server-key",
        str(keys / "server.key"),
        "--curve-secret-key",
        str(keys / "good.key_secret"),
    ]
    with Feeder(pub):
        assert cli.main(argv) == 0
    assert len(_lines(capsys.readouterr().out)) == 5


def test_curve_bad_key_is_one_clear_error(curve_publisher, capsys: pytest.CaptureFixture[str]) -> None:
    pub, keys = curve_publisher
    argv = ["listen", "--connect", pub.endpoint, "--seconds", "5"]
    argv += [
        "--curve-server-key",
        str(keys / "server.key"),
        "--curve-secret-key",
        str(keys / "bad.key_secret"),
    ]
    with Feeder(pub):
        started = time.monotonic()
        assert cli.main(argv) == 2
    assert time.monotonic() - started < 3.0  # reported at the handshake, not at the time limit
    captured = capsys.readouterr()
    assert captured.out == ""
    rejected = "rejected this client's key (CURVE authentication failed)"
    assert captured.err == f"streamd: error: the publisher at {pub.endpoint} {rejected}\n"


def test_plain_listener_on_curve_publisher_is_told_why(curve_publisher, capsys) -> None:
    pub, _ = curve_publisher
    with Feeder(pub):
        assert cli.main(["listen", "--connect", pub.endpoint, "--seconds", "5"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    # Which side notices the mechanism mismatch first is a race; either way the user is told the same thing.
    assert captured.err in {
        f"streamd: error: the publisher at {pub.endpoint} requires CURVE authentication: "
        "give --curve-server-key and --curve-secret-key\n",
        f"streamd: error: the handshake with the publisher at {pub.endpoint} failed: it probably requires "
        "CURVE authentication (give --curve-server-key and --curve-secret-key)\n",
    }


def test_a_publisher_restarting_mid_handshake_is_waited_for(capsys: pytest.CaptureFixture[str]) -> None:
    """A publisher that goes away closes connections during their handshake (ZeroMQ reports a failure
    without detail, errno ECONNRESET): the listener keeps reconnecting and receives from the publisher
    that comes back on the same port, instead of exiting with a CURVE hint."""
    dying = socket.create_server(("127.0.0.1", 0))
    port = dying.getsockname()[1]
    closed = threading.Event()

    def close_two_connections() -> None:
        for _ in range(2):
            conn, _ = dying.accept()
            conn.recv(10)  # the listener's greeting has begun
            conn.close()
        dying.close()
        closed.set()

    closer = threading.Thread(target=close_two_connections, daemon=True)
    closer.start()
    result: list[int] = []
    listener = threading.Thread(
        target=lambda: result.append(
            cli.main(["listen", "--connect", f"tcp://127.0.0.1:{port}", "--count", "3"])
        )
    )
    listener.start()
    assert closed.wait(5.0)
    pub = Publisher(f"tcp://127.0.0.1:{port}")
    pub.start()
    try:
        with Feeder(pub):
            listener.join(10.0)
    finally:
        pub.stop()
    assert result == [0]
    assert len(_lines(capsys.readouterr().out)) == 3


def test_handshake_watch_reports_only_failures_that_persist() -> None:
    from streamd.security import HandshakeWatch

    no_detail, reset = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, 104
    watch = HandshakeWatch("tcp://127.0.0.1:5556", curve=False)
    assert [watch.observe(no_detail, reset, t) for t in (0.0, 0.1, 0.2)] == [None, None, None]  # < 1 s
    assert "probably requires CURVE" in watch.observe(no_detail, reset, 1.2)
    watch = HandshakeWatch("tcp://127.0.0.1:5556", curve=True)
    watch.observe(no_detail, reset, 0.0)
    watch.observe(no_detail, reset, 0.5)
    assert watch.observe(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0, 0.9) is None  # a success starts the count again
    assert watch.observe(no_detail, reset, 1.5) is None and watch.observe(no_detail, reset, 2.0) is None
    assert "public key" in watch.observe(no_detail, reset, 2.6)
    assert "rejected" in watch.observe(zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400, 3.0)  # at once


def test_malformed_messages_are_skipped_and_counted(capsys: pytest.CaptureFixture[str]) -> None:
    context = zmq.Context()
    raw = context.socket(zmq.PUB)
    raw.linger = 0
    raw.bind("tcp://127.0.0.1:*")
    endpoint = raw.last_endpoint.decode()
    good = messages.encode(messages.event("mic", "dog", "start", 0, 5, 0.9, wall_time=WALL))
    bad = [
        [b"streamd.mic.event", b"\x80\x04\x95 not json, a pickle header"],
        [*good, b"third frame"],
        [b"streamd.mic.event", b'{"schema": "streamd/1", "type": "event", "stream": "other"}'],
    ]
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            for frames in bad:
                raw.send_multipart(frames)
            time.sleep(0.02)
            raw.send_multipart(good)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        assert cli.main(["listen", "--connect", endpoint, "--count", "3"]) == 0
    finally:
        stop.set()
        feeder.join(5.0)
        raw.close()
        context.term()
    captured = capsys.readouterr()
    assert _lines(captured.out) == [messages.decode(good)] * 3
    err = captured.err.splitlines()
    reasons = {line.removeprefix("streamd listen: skipping a malformed message: ") for line in err[:3]}
    not_json = next(r for r in reasons if r.startswith("message body is not valid JSON: "))
    assert reasons == {
        not_json,
        "more than 2 frames",
        "topic b'streamd.mic.event' does not match the body (b'streamd.other.event')",
    }
    skipped = int(err[-1].removeprefix("streamd listen: skipped ").split()[0])
    assert skipped >= 6 and len(err) == 4  # 3 reasons shown, then one summary line


def test_oversized_frames_are_skipped_or_survived(capsys: pytest.CaptureFixture[str]) -> None:
    """A body over the message bound is a skipped malformed message; a frame over the memory bound makes
    ZeroMQ drop the connection for good: the listener says so on stderr (the first few times, then a total
    at exit), re-opens it and goes on receiving. Each round starts once the listener is connected (the
    publisher's own monitor says so), so no frame is sent into a gap."""
    from streamd.commands.listen import MAX_FRAME_BYTES

    context = zmq.Context()
    raw = context.socket(zmq.PUB)
    raw.linger = 0
    monitor = raw.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    raw.bind("tcp://127.0.0.1:*")
    endpoint = raw.last_endpoint.decode()
    good = messages.encode(messages.event("mic", "dog", "start", 0, 5, 0.9, wall_time=WALL))
    too_long = [b"streamd.mic.event", b"x" * (messages.MAX_MESSAGE_BYTES + 1)]
    too_big = [b"streamd.mic.event", b"x" * (MAX_FRAME_BYTES + 1)]
    stop = threading.Event()

    def connected() -> bool:
        while not stop.is_set():
            if monitor.poll(50):
                monitor.recv_multipart()
                time.sleep(0.2)  # the listener's subscription reaches the publisher
                return True
        return False

    def feed() -> None:
        for last in (too_big, too_big, None):  # two rounds that end in a connection dropped, then the rest
            if not connected():
                return
            for i in range(10 if last is not None else 1000):
                if stop.is_set():
                    return
                raw.send_multipart(too_long if i == 5 else good)
                time.sleep(0.02)
            if last is not None:
                raw.send_multipart(last)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        assert cli.main(["listen", "--connect", endpoint, "--count", "30", "--seconds", "60"]) == 0
    finally:
        stop.set()
        feeder.join(5.0)
        monitor.close()
        raw.close()
        context.term()
    captured = capsys.readouterr()
    assert _lines(captured.out) == [messages.decode(good)] * 30  # 9 + 9 + 12: nothing lost between rounds
    err = captured.err.splitlines()
    lost = [line for line in err if line.startswith("streamd listen: lost the connection to ")]
    assert len(lost) == 2 and f"a frame over {MAX_FRAME_BYTES} bytes" in lost[0]
    assert "streamd listen: skipping a malformed message: message of 65537 bytes exceeds" in captured.err
    assert err[-1] == "streamd listen: lost the connection 2 time(s)"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--count", "0"], "--count must be >= 1, got 0"),
        (["--seconds", "-1"], "--seconds must be a finite number > 0, got -1.0"),
        (["--seconds", "inf"], "--seconds must be a finite number > 0, got inf"),  # was an OverflowError
        (["--curve-server-key", "server.key"], "--curve-server-key and --curve-secret-key go together"),
        (
            ["--connect", "nonsense"],
            "cannot connect to nonsense: invalid endpoint (expected e.g. tcp://127.0.0.1:5556)",
        ),
    ],
)
def test_bad_options_are_one_line_errors(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["listen", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"streamd: error: {error}\n"
