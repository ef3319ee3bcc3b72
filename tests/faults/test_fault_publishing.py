"""The publishing side end to end, through ``streamd replay`` and ``streamd listen`` processes on real
sockets: stalled and paused subscribers, no subscriber at all, CURVE with good and bad client keys, a
second daemon on a port in use, and signals. Every run checks exit codes, messages and counters.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from support.net import StalledSubscriber, port_of, wait_for_sockets
from support.paths import REPO, esc10_clips
from support.process import (
    Result,
    StreamdProcess,
    assert_clean_error,
    assert_no_traceback,
    run_streamd,
    streamd_command,
    streamd_env,
)

from streamd.cli import main

RATE = 16000
START_TIMEOUT_S = 60.0
STOP_LIMIT_S = 2.0


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory: pytest.TempPathFactory, labels: list[str]) -> Path:
    """Two minutes of real sound: 24 ESC-10 clips one after another."""
    audio = np.concatenate([sf.read(p, dtype="float32")[0] for p in esc10_clips(24)])
    path = tmp_path_factory.mktemp("long") / "two_minutes.wav"
    sf.write(path, audio, RATE, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory, known_audio: np.ndarray) -> Path:
    """Ten seconds of real sound (the known clip twice)."""
    path = tmp_path_factory.mktemp("rec") / "ten_seconds.wav"
    sf.write(path, np.concatenate([known_audio, known_audio]), RATE, subtype="PCM_16")
    return path


def daemon_args(path: Path, checkpoint: Path, endpoint: str, *extra: str | Path) -> list[str]:
    args = ["replay", path, "--checkpoint", checkpoint, "--publish", endpoint, "--no-dashboard", "--json"]
    return [str(a) for a in (*args, *extra)]


def of_type(messages: list[dict], kind: str) -> list[dict]:
    return [m for m in messages if m["type"] == kind]


def pipeline_span_s(messages: list[dict]) -> float:
    """Wall time from the "starting" status to the final one (the pipeline's work, not process start)."""
    statuses = of_type(messages, "status")
    return statuses[-1]["wall_time"] - statuses[0]["wall_time"]


def assert_finished_cleanly(result: Result) -> list[dict]:
    assert result.returncode == 0, result.describe()
    assert_no_traceback(result)
    published = result.json_lines()
    final = of_type(published, "status")[-1]
    assert final["state"] == "finished", final
    counters = final["counters"]
    assert counters["dropped_windows"] == 0 and counters["publish_dropped"] == 0 and counters["overruns"] == 0
    assert counters["windows"] == len(of_type(published, "prediction"))
    return published


def assert_suffix(heard: list[dict], published: list[dict], at_least: float) -> None:
    """A subscriber that connected late may miss the beginning, but nothing after it joined."""
    predictions = of_type(published, "prediction")
    got = of_type(heard, "prediction")
    assert got == predictions[len(predictions) - len(got) :]
    assert len(got) >= at_least * len(predictions), (len(got), len(predictions))


def test_stalled_and_paused_subscribers_never_slow_the_pipeline(
    long_recording: Path, checkpoint: Path, endpoint: str
) -> None:
    extra = ["--speed", "max", "--hop", "0.5", "--top-k", "50"]
    # No subscriber at all: the baseline, which must itself be complete.
    alone = run_streamd(*daemon_args(long_recording, checkpoint, endpoint, *extra), timeout=180)
    published_alone = assert_finished_cleanly(alone)

    port = port_of(endpoint)
    listener = StreamdProcess(["listen", "--connect", endpoint, "--seconds", "180"])
    paused = StreamdProcess(["listen", "--connect", endpoint, "--seconds", "180"])
    daemon = StreamdProcess(
        daemon_args(long_recording, checkpoint, endpoint, *extra, "--wait-subscriber", "60")
    )
    with listener, paused, daemon, StalledSubscriber(endpoint):
        listener.start()
        paused.start()
        time.sleep(1.0)  # both are in their reconnect loops before the publisher binds
        daemon.start()
        assert wait_for_sockets(port, "established", 3, START_TIMEOUT_S), daemon.stderr_text()
        paused.send_signal(signal.SIGSTOP)  # a subscriber that stops reading mid-stream
        try:
            result = daemon.wait(180)
        finally:
            paused.send_signal(signal.SIGCONT)
        time.sleep(1.0)  # let the paused one catch up with what ZeroMQ kept for it
        for sub in (listener, paused):
            sub.send_signal(signal.SIGINT)
        heard = listener.wait(10)
        heard_paused = paused.wait(10)

    published = assert_finished_cleanly(result)
    assert of_type(published, "prediction") == [
        {**p, "wall_time": q["wall_time"], "latency_ms": q["latency_ms"], "seq": q["seq"]}
        for p, q in zip(of_type(published_alone, "prediction"), of_type(published, "prediction"), strict=True)
    ]
    span, span_alone = pipeline_span_s(published), pipeline_span_s(published_alone)
    assert span < 1.5 * span_alone + 1.0, (span, span_alone)
    assert heard.returncode == 0 and heard_paused.returncode == 0
    assert_suffix(heard.json_lines(), published, at_least=0.9)
    assert_suffix(heard_paused.json_lines(), published, at_least=0.9)


def _keys(directory: Path, name: str) -> tuple[Path, Path]:
    assert main(["keys", str(directory), "--name", name]) == 0
    return directory / f"{name}.key", directory / f"{name}.key_secret"


def test_curve_admits_the_good_client_key_and_rejects_the_others(
    tmp_path: Path, recording: Path, checkpoint: Path, endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    server_public, server_secret = _keys(tmp_path / "server", "server")
    good_public, good_secret = _keys(tmp_path / "good", "good")
    _, bad_secret = _keys(tmp_path / "bad", "bad")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    shutil.copy(good_public, allowed)
    capsys.readouterr()

    def listen(*auth: Path) -> StreamdProcess:
        args = ["listen", "--connect", endpoint, "--seconds", "60"]
        if auth:
            args += ["--curve-server-key", str(auth[0]), "--curve-secret-key", str(auth[1])]
        return StreamdProcess(args)

    good, bad, plain = listen(server_public, good_secret), listen(server_public, bad_secret), listen()
    curve = ["--curve-secret-key", server_secret, "--curve-allow-dir", allowed, "--wait-subscriber", "60"]
    daemon = StreamdProcess(daemon_args(recording, checkpoint, endpoint, "--speed", "4", *curve))
    with good, bad, plain, daemon:
        for sub in (good, bad, plain):
            sub.start()
        daemon.start()  # waits for the good client: the only one that can subscribe
        result = daemon.wait(120)
        time.sleep(0.5)
        good.send_signal(signal.SIGINT)
        heard = good.wait(10)
        refused, refused_plain = bad.wait(30), plain.wait(30)

    published = assert_finished_cleanly(result)
    assert heard.returncode == 0, heard.describe()
    assert of_type(heard.json_lines(), "prediction") == of_type(published, "prediction")
    assert heard.json_lines()[-1] == of_type(published, "status")[-1]
    assert_clean_error(refused, "rejected this client's key")
    assert_clean_error(refused_plain, endpoint, "curve")
    assert refused.json_lines() == [] and refused_plain.json_lines() == []


def test_binding_beyond_loopback_without_curve_is_refused(
    recording: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(daemon_args(recording, checkpoint, "tcp://0.0.0.0:5999", "--speed", "max"))
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.splitlines() == [err.strip()] and "refusing to bind tcp://0.0.0.0:5999" in err


def test_second_daemon_on_the_same_port_is_refused_clearly(
    recording: Path, checkpoint: Path, endpoint: str
) -> None:
    first = StreamdProcess(daemon_args(recording, checkpoint, endpoint, "--speed", "1", "--hop", "0.5"))
    with first:
        first.start()
        assert first.wait_for_json(lambda m: m["type"] == "status", START_TIMEOUT_S), first.stderr_text()
        second = run_streamd(*daemon_args(recording, checkpoint, endpoint, "--speed", "max"), timeout=60)
        assert first.running(), "the first daemon must be unaffected"
        signalled = time.monotonic()
        first.send_signal(signal.SIGINT)
        result = first.wait(10)
        stop_s = time.monotonic() - signalled
    assert_clean_error(second, endpoint, "address already in use", exit_code=2)
    assert second.json_lines() == []
    assert result.returncode == 0, result.describe()
    assert stop_s < STOP_LIMIT_S, f"{stop_s:.2f} s from SIGINT to exit"
    assert result.json_lines()[-1]["state"] == "stopped"


def test_sigterm_stops_the_daemon_with_a_final_status_within_two_seconds(
    recording: Path, checkpoint: Path, endpoint: str
) -> None:
    sig = signal.SIGTERM  # SIGINT: see the test above and the live tests
    listener = StreamdProcess(["listen", "--connect", endpoint, "--seconds", "60"])
    extra = ["--speed", "1", "--window", "1", "--hop", "0.5", "--wait-subscriber", "60"]
    daemon = StreamdProcess(daemon_args(recording, checkpoint, endpoint, *extra))
    with listener, daemon:
        listener.start()
        daemon.start()
        second = daemon.wait_for_json(lambda m: m.get("window_index") == 1, START_TIMEOUT_S)
        assert second is not None, daemon.stderr_text()
        signalled = time.monotonic()
        daemon.send_signal(sig)
        result = daemon.wait(10)
        stop_s = time.monotonic() - signalled
        time.sleep(0.5)
        listener.send_signal(signal.SIGINT)
        heard = listener.wait(10)

    assert result.returncode == 0, result.describe()
    assert stop_s < STOP_LIMIT_S, f"{stop_s:.2f} s from {sig!r} to exit"
    assert_no_traceback(result)
    published = result.json_lines()
    final = published[-1]
    assert final["type"] == "status" and final["state"] == "stopped"
    assert final["t_end"] < 10.0  # it stopped early, at the signal
    assert heard.json_lines() == published  # the one subscriber heard everything, the final status too


def test_json_output_reader_going_away_is_no_traceback(
    recording: Path, checkpoint: Path, endpoint: str
) -> None:
    """``streamd replay --json | head -1``: the pipe closes after one line; no traceback, exit 0."""
    command = streamd_command(daemon_args(recording, checkpoint, endpoint, "--speed", "max", "--hop", "0.5"))
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=streamd_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader is gone
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert json.loads(first)["type"] == "status"
    assert b"Traceback" not in err, err.decode()
    assert proc.returncode == 0, (proc.returncode, err.decode())


def test_a_paced_run_whose_json_reader_goes_away_ends_there(
    long_recording: Path, checkpoint: Path, endpoint: str
) -> None:
    """``streamd run --json | head -1`` never ended (its sink stopped printing and the daemon went on
    unseen): a pipe's reader going away now stops the run as SIGTERM would, exit 0. A two-minute file
    replayed in real time stands in for a microphone."""
    command = streamd_command(daemon_args(long_recording, checkpoint, endpoint, "--speed", "1"))
    proc = subprocess.Popen(
        command, cwd=REPO, env=streamd_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader is gone; the next line (within a second or two) finds it so
    closed = time.monotonic()
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert json.loads(first)["type"] == "status"
    assert proc.returncode == 0 and b"Traceback" not in err, (proc.returncode, err.decode())
    assert time.monotonic() - closed < 15.0  # not the two minutes of the file
