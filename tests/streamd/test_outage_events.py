"""An event open when a stream's source goes away ends while it is away, not once it is back.

The daemon's real pipeline (a small checkpoint; every window hits the watched label, so its event is open
for as long as windows come) on a real source that goes away: a TCP server on 127.0.0.1 streaming a WAV
in real time that closes its connection (a server killed) or keeps it open with nothing on it (a stalled
server), and a live source that stalls and then resumes with no audio lost. Once the supervisor declares
the source away (``device_error`` at once, or ``stalled`` after ``watchdog_s``) the event ends right after
the last window of the audio heard, at that window's end (never after the last audio), once: the MQTT
binary sensor goes OFF, and the source coming back (the stretch's tail window, the first window after the
outage) neither ends it again nor re-opens it. A source that never goes away sees no change.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from pipeline_helpers import Pipeline
from support.faults import FlakySource, Outage
from support.fixtures import free_tcp_port
from support.mosquitto import Broker, Subscriber

from streamd.collect import replay_collect
from streamd.config import DaemonConfig, with_windows
from streamd.events import EventConfig
from streamd.model_loading import LoadedModel, load_model
from streamd.network_source import NetworkSource
from streamd.sources import Source

RATE = 16000
LABEL = "dog"
WINDOW_S, HOP_S = 1.0, 0.5
WATCHDOG_S = 1.0
PROMPT_S = 1.5  # from the source declared away to the event's end published (measured: ~0.1 s)
CHUNK_S = 0.021  # what the server sends at a time: the audio never ends on the hop grid (before 10.5 s)
AHEAD_S = 0.2  # the server runs this much ahead of real time, as live servers do


class LiveWavServer:
    """A WAV stream over plain TCP on 127.0.0.1, in real time, each client from the start of the audio."""

    def __init__(self, audio: np.ndarray) -> None:
        self.pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        self.port = free_tcp_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.sent_s = 0.0  # audio sent on the latest connection
        self.quiet_at = 0.0  # monotonic time it stopped sending
        self._sending = threading.Event()
        self._close = False  # once quiet: close the connection (else hold it open, silent)
        self._listening = threading.Event()
        self._done = threading.Event()

    def start(self) -> None:
        """Listen (again) and serve whoever connects."""
        self._sending.set()
        self._listening.set()
        listener = socket.create_server(("127.0.0.1", self.port))
        listener.settimeout(0.05)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def go_quiet(self, *, close: bool) -> None:
        """Stop sending and take no new client: the connection closed (a server killed) or left open
        with nothing on it (a stalled server)."""
        self._close = close
        self._listening.clear()
        self._sending.clear()
        self.quiet_at = time.monotonic()

    def stop(self) -> None:
        self.go_quiet(close=True)
        self._done.set()

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while self._listening.is_set():
                with contextlib.suppress(TimeoutError):
                    conn, _ = listener.accept()
                    threading.Thread(target=self._send, args=(conn,), daemon=True).start()

    def _send(self, conn: socket.socket) -> None:
        header = b"RIFF" + struct.pack("<I", 36 + len(self.pcm)) + b"WAVEfmt "
        header += struct.pack("<IHHIIHH", 16, 1, 1, RATE, 2 * RATE, 2, 16) + b"data"
        step = round(RATE * CHUNK_S) * 2
        with conn, contextlib.suppress(OSError):
            conn.sendall(header + struct.pack("<I", len(self.pcm)))
            self.sent_s = 0.0
            started = time.monotonic()
            for i, pos in enumerate(range(0, len(self.pcm), step)):
                delay = started + i * CHUNK_S - AHEAD_S - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if not self._sending.is_set():
                    break
                conn.sendall(self.pcm[pos : pos + step])
                self.sent_s += len(self.pcm[pos : pos + step]) / (2 * RATE)
            while not (self._close or self._done.is_set()):  # a stalled server: open, silent
                time.sleep(0.05)


def _config(mqtt_port: int | None = None) -> DaemonConfig:
    cfg = with_windows(DaemonConfig(), WINDOW_S, HOP_S)
    cfg.capture.watchdog_s = WATCHDOG_S
    cfg.events = EventConfig(threshold=0.0, min_hits=1, hold_s=2.0, allow=[LABEL])  # every window hits
    if mqtt_port is not None:
        cfg.mqtt.url = f"mqtt://127.0.0.1:{mqtt_port}"
        cfg.mqtt.client_id = "streamd-outage-test"
    return cfg


class Run:
    """The daemon's real pipeline on one source, every message kept with its arrival time."""

    def __init__(self, source: Source, model: LoadedModel, cfg: DaemonConfig) -> None:
        self.source = source
        self.pipe = Pipeline(cfg, [source], model)
        self.stream = self.pipe.daemon.streams[0]
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self.pipe.publisher.add_sink(lambda msg: self.arrivals.append((time.monotonic(), msg)))

    def heard_s(self) -> float:
        return self.source.ring.write_index / RATE

    def away(self, server: LiveWavServer) -> tuple[float, float, float]:
        """While the source is away: the seconds heard and sent, and when the server stopped sending."""
        return self.heard_s(), server.sent_s, server.quiet_at

    def of(self, kind: str) -> list[tuple[float, dict[str, Any]]]:
        return [(at, m) for at, m in list(self.arrivals) if m["type"] == kind]

    def events(self) -> list[tuple[str, float, float]]:
        return [(m["state"], m["t_start"], m["t_end"]) for _, m in self.of("event")]

    def declared_at(self) -> float:
        """When the supervisor declared the source away (its first status saying so)."""
        return next(at for at, m in self.of("status") if m["state"] in ("stalled", "device_error"))

    def results(self) -> list[dict[str, Any]]:
        """The stream's predictions and events, in the order they were published."""
        return [m for _, m in list(self.arrivals) if m["type"] in ("prediction", "event")]


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture(scope="module")
def model(small_checkpoint: Path) -> LoadedModel:
    return load_model(small_checkpoint, compute="cpu", precision="fp32")


@pytest.fixture()
def audio(clips: list[Path]) -> np.ndarray:
    return np.concatenate([sf.read(str(p), dtype="float32")[0] for p in clips] * 2)  # 30 s


def _check_the_early_end(run: Run, away: tuple[float, float, float], within_s: float) -> None:
    """One end, right after the last window of the audio heard, at its end (``away``: seconds heard and
    sent, and when the server stopped sending); ``within_s`` of that, soon after the declaration."""
    heard_s, sent_s, quiet_at = away
    assert sent_s - 0.2 <= heard_s <= sent_s + 1e-6  # what the daemon heard is what the server sent
    starts_and_ends = run.events()
    assert [state for state, *_ in starts_and_ends[:2]] == ["start", "end"], starts_and_ends
    _, t_start, t_end = starts_and_ends[1]
    assert t_start == 0.0 and heard_s - HOP_S - 0.01 < t_end <= heard_s  # never after the last audio
    results = run.results()
    end = next(i for i, m in enumerate(results) if m["type"] == "event" and m["state"] == "end")
    last = results[end - 1]  # the end follows the last window before the source went away, at once
    assert last["type"] == "prediction" and last["t_end"] == t_end
    ended_at = run.of("event")[1][0]
    assert ended_at - run.declared_at() < PROMPT_S
    assert ended_at - quiet_at < within_s, ended_at - quiet_at
    print(
        f"event end published {ended_at - quiet_at:.3f} s after the server stopped sending, "
        f"{ended_at - run.declared_at():.3f} s after the source was declared away"
    )


def test_an_event_open_when_the_server_is_killed_ends_at_once_and_once(
    audio: np.ndarray, model: LoadedModel, broker: Broker
) -> None:
    server = LiveWavServer(audio)
    server.start()
    sub = Subscriber(broker.port)
    try:
        run = Run(NetworkSource(server.url, watchdog_s=WATCHDOG_S), model, _config(broker.port))
        topic = f"streamd/{run.stream.name}/active/{LABEL}"
        run.pipe.start_live()
        assert _wait(lambda: run.heard_s() >= 3.0 and run.events(), 30), run.events()
        assert sub.wait_for(topic, b"ON")
        server.go_quiet(close=True)
        assert _wait(lambda: len(run.events()) >= 2, 10 * PROMPT_S), run.events()
        away = run.away(server)
        assert _wait(lambda: sub.on(topic)[-1:] == [b"OFF"], 5.0), sub.on(topic)  # the sensor is off
        still_away = run.source.error is not None and run.source.outages == []
        time.sleep(1.0)  # away a while longer: nothing more about the event
        quiet = run.events()
        server.start()  # back: a gap, the stretch's tail window, then a new stretch whose first window
        assert _wait(lambda: len(run.events()) >= 3, 30), run.events()  # opens a new event
        time.sleep(0.6)
        run.pipe.stop_live()
        assert _wait(lambda: sub.on(topic)[-1:] == [b"OFF"], 5.0), sub.on(topic)  # off at the stop
    finally:
        server.stop()
        sub.close()
    assert still_away, "the event ended only once the source was back"
    _check_the_early_end(run, away, PROMPT_S)  # declared at once: the connection was closed
    assert quiet == run.events()[:2]
    heard_s = away[0]
    start, end = run.source.outages[0]
    assert start == pytest.approx(heard_s, abs=1e-3)  # the gap begins where the audio heard ended
    events = run.events()
    assert [state for state, *_ in events] == ["start", "end", "start", "end"]  # the last at the stop
    assert events[2][1] >= end - 1e-6  # the new event is of the audio after the gap
    preds = [m for _, m in run.of("prediction")]
    assert [p["window_index"] for p in preds] == list(range(len(preds)))
    assert all(p["t_end"] <= heard_s + 1e-6 or p["t_start"] >= end - 1e-6 for p in preds)  # none spans it
    results = run.results()
    ended = next(i for i, m in enumerate(results) if m["type"] == "event" and m["state"] == "end")
    late = [i for i, m in enumerate(results[ended + 1 :], ended + 1) if m["t_end"] <= heard_s + 1e-6]
    assert len(late) == 1 and results[late[0]]["type"] == "prediction"  # the stretch's tail window, once
    assert results[late[0]]["t_end"] == pytest.approx(heard_s, abs=0.0101)  # the source back, the gap known
    assert results[late[0] + 1]["type"] == "prediction"  # and it neither ended nor opened an event
    states = [state for k, state in enumerate(sub.on(topic)) if k == 0 or state != sub.on(topic)[k - 1]]
    assert states[-4:] == [b"ON", b"OFF", b"ON", b"OFF"] and states.count(b"ON") == 2, states


def test_an_event_open_when_the_server_stalls_ends_once_the_watchdog_says_so(
    audio: np.ndarray, model: LoadedModel
) -> None:
    server = LiveWavServer(audio)
    server.start()
    try:
        run = Run(NetworkSource(server.url, watchdog_s=WATCHDOG_S), model, _config())
        run.pipe.start_live()
        assert _wait(lambda: run.heard_s() >= 3.0 and run.events(), 30), run.events()
        server.go_quiet(close=False)
        assert _wait(lambda: len(run.events()) >= 2, WATCHDOG_S + 10 * PROMPT_S), run.events()
        away = run.away(server)
        time.sleep(1.0)
        run.pipe.stop_live()
    finally:
        server.stop()
    _check_the_early_end(run, away, WATCHDOG_S + PROMPT_S)  # the watchdog, or FFmpeg's read timeout
    assert [state for state, *_ in run.events()] == ["start", "end"]  # the stop ends nothing a second time


def test_a_stall_with_no_audio_lost_ends_the_event_and_changes_no_window(
    model: LoadedModel, clips: list[Path], tmp_path: Path
) -> None:
    """A live source that stalls for 2 s and resumes where it stopped (no gap): the event ends during
    the stall, a new one starts with the audio after it, and every window is the offline one."""
    audio = np.concatenate([sf.read(str(p), dtype="float32")[0] for p in clips])[: 8 * RATE]
    outage = Outage(at_s=3.0, duration_s=2.0, kind="stall")
    source = FlakySource(audio, RATE, [outage], speed=2.0)
    cfg = _config()
    cfg.capture.watchdog_s = 0.5
    run = Run(source, model, cfg)
    stop = threading.Event()
    timer = threading.Timer(30.0, stop.set)
    timer.start()
    try:
        run.pipe.daemon.run_forever(stop)  # until the audio is over
    finally:
        timer.cancel()
        run.pipe.integrations.close()
    assert not stop.is_set(), "the daemon did not finish the audio in time"
    path = tmp_path / "clip.wav"
    sf.write(path, audio, RATE, subtype="FLOAT")
    reference = [m for m in replay_collect([path], model, WINDOW_S, HOP_S) if m["type"] == "prediction"]
    preds = [m for _, m in run.of("prediction")]
    assert [(p["t_start"], p["t_end"]) for p in preds] == [(p["t_start"], p["t_end"]) for p in reference]
    for got, want in zip(preds, reference, strict=True):
        assert [x["label"] for x in got["labels"]] == [x["label"] for x in want["labels"]]
        assert [x["score"] for x in got["labels"]] == pytest.approx(
            [x["score"] for x in want["labels"]], abs=1e-5
        )
    events = run.events()
    assert [(state, t_start) for state, t_start, _ in events] == [
        ("start", 0.0),
        ("end", 0.0),
        ("start", 3.0),  # the first window starting after the stop: one across it feeds no event
        ("end", 3.0),
    ]
    assert events[1][2] == 3.0  # the last window before the stall, [2, 3]
    ended_at = run.of("event")[1][0]
    assert outage.began is not None and outage.ended is not None
    assert ended_at < outage.ended and ended_at - run.declared_at() < PROMPT_S


def test_a_source_that_never_goes_away_ends_no_event_early(audio: np.ndarray, model: LoadedModel) -> None:
    server = LiveWavServer(audio)
    server.start()
    try:
        run = Run(NetworkSource(server.url, watchdog_s=WATCHDOG_S), model, _config())
        run.pipe.start_live()
        assert _wait(lambda: run.heard_s() >= 4.0 and len(run.of("prediction")) >= 6, 30)
        stop_asked = time.monotonic()
        run.pipe.stop_live()
    finally:
        server.stop()
    stream = run.stream
    assert (stream.away[0], list(stream.audio_stops), stream.events_from) == (0, [], 0.0)
    assert not {m["state"] for _, m in run.of("status")} & {"stalled", "device_error"}
    preds = [m for _, m in run.of("prediction")]
    assert [(p["t_start"], p["window_index"]) for p in preds] == [(HOP_S * k, k) for k in range(len(preds))]
    assert [state for state, *_ in run.events()] == ["start", "end"]
    assert run.of("event")[1][0] >= stop_asked  # open until the daemon stopped
    assert run.events()[1][2] == preds[-1]["t_end"]
