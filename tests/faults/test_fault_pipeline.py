"""Faults inside the pipeline, driven through ``streamd.daemon.Daemon`` with real stages around them.

A live source that errors out or stalls, a model that raises, a model slower than real time. Each test
checks the published statuses and counters, and that every window that was accepted is accounted for.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from support.faults import (
    INJECTED,
    AfterWarmUp,
    FailingModel,
    FlakySource,
    Outage,
    SlowModel,
    collecting_publisher,
    wrapped,
)

from streamd.collect import replay_collect
from streamd.config import DaemonConfig, with_windows
from streamd.daemon import Daemon
from streamd.file_source import FileSource
from streamd.model_loading import LoadedModel, load_model

RATE = 16000
WINDOW_S = 1.0
HOP_S = 0.5
RUN_LIMIT_S = 30.0


@pytest.fixture(scope="module")
def loaded(checkpoint: Path) -> LoadedModel:
    return load_model(checkpoint, compute="cpu")


@pytest.fixture(scope="module")
def clip_wav(tmp_path_factory: pytest.TempPathFactory, known_audio: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    sf.write(path, known_audio, RATE, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def reference(clip_wav: Path, loaded: LoadedModel) -> list[dict]:
    """The predictions of the clip through the untouched pipeline (as a file, flat out)."""
    return [m for m in replay_collect([clip_wav], loaded, WINDOW_S, HOP_S) if m["type"] == "prediction"]


def config(**capture: float) -> DaemonConfig:
    cfg = with_windows(DaemonConfig(), WINDOW_S, HOP_S)
    cfg.publish.status_interval_s = 0.2
    cfg.engine.max_batch = 1
    for key, value in capture.items():
        setattr(cfg.capture, key, value)
    return cfg


def run_live(daemon: Daemon) -> None:
    """``run_forever`` until the source's audio is over (or the time limit, which fails the test)."""
    stop = threading.Event()
    timer = threading.Timer(RUN_LIMIT_S, stop.set)
    timer.start()
    try:
        daemon.run_forever(stop)
    finally:
        timer.cancel()
    assert not stop.is_set(), "the daemon did not finish the audio in time"


def by_type(sent: list[dict], kind: str) -> list[dict]:
    return [m for m in sent if m["type"] == kind]


def assert_all_audio_classified(sent: list[dict], reference: list[dict], samples: int) -> None:
    """Nothing accepted was lost: every sample reached the features and every window was published."""
    final = by_type(sent, "status")[-1]["counters"]
    assert final["samples"] == samples
    assert final["overruns"] == 0 and final["lost_samples"] == 0 and final["dropped_windows"] == 0
    predictions = by_type(sent, "prediction")
    assert [(p["t_start"], p["t_end"]) for p in predictions] == [
        (p["t_start"], p["t_end"]) for p in reference
    ]
    assert final["windows"] == len(predictions)


def test_device_error_is_reported_retried_with_backoff_and_resumed(
    loaded: LoadedModel, known_audio: np.ndarray, reference: list[dict]
) -> None:
    outage = Outage(at_s=1.5, duration_s=2.5, kind="error")
    source = FlakySource(known_audio, RATE, [outage], speed=2.0)
    publisher, sent = collecting_publisher()
    daemon = Daemon(config(watchdog_s=0.5), [source], loaded, publisher)
    run_live(daemon)

    statuses = by_type(sent, "status")
    states = [s["state"] for s in statuses]
    first_error = states.index("device_error")
    assert INJECTED in statuses[first_error]["message"] and "reopening" in statuses[first_error]["message"]
    assert "running" in states[first_error:], "the stream never came back"
    assert states[-1] == "stopped" and daemon.errors == []
    assert statuses[-1]["counters"]["restarts"] == source.restarts >= 2
    # Retries back off: each wait at least as long as the one before, and not a busy loop.
    gaps = np.diff(source.restart_times)
    assert len(source.restart_times) <= 8, f"{len(source.restart_times)} reopen attempts in 2.5 s"
    assert np.all(gaps[1:] >= gaps[:-1] - 0.02), gaps
    assert gaps[-1] >= 2 * gaps[0], gaps
    # ... yet the device is back soon after it returns.
    assert outage.ended is not None and outage.began is not None
    assert outage.ended - (outage.began + outage.duration_s) < 2.0
    assert_all_audio_classified(sent, reference, len(known_audio))


def test_stalled_device_trips_the_watchdog_and_capture_restarts(
    loaded: LoadedModel, known_audio: np.ndarray, reference: list[dict]
) -> None:
    outage = Outage(at_s=2.0, duration_s=1.2, kind="stall")
    source = FlakySource(known_audio, RATE, [outage], speed=2.0)
    publisher, sent = collecting_publisher()
    daemon = Daemon(config(watchdog_s=0.5), [source], loaded, publisher)
    run_live(daemon)

    statuses = by_type(sent, "status")
    stalled = [s for s in statuses if s["state"] == "stalled"]
    assert stalled, [s["state"] for s in statuses]
    assert "no audio for" in stalled[0]["message"] and "reopening" in stalled[0]["message"]
    after = [s["state"] for s in statuses[statuses.index(stalled[-1]) :]]
    assert "running" in after and after[-1] == "stopped"
    assert source.restarts >= 1 and statuses[-1]["counters"]["restarts"] == source.restarts
    assert daemon.errors == []
    assert_all_audio_classified(sent, reference, len(known_audio))


def test_model_error_is_logged_with_its_window_counted_and_the_daemon_goes_on(
    loaded: LoadedModel, clip_wav: Path, reference: list[dict], caplog: pytest.LogCaptureFixture
) -> None:
    failing = {2, 5}  # window indices: after the warm-up calls, window k is call k
    model = wrapped(loaded, lambda inner: FailingModel(inner, failing))
    publisher, sent = collecting_publisher()
    daemon = Daemon(config(), [FileSource(clip_wav, speed=None)], model, publisher)
    model.model.skip = daemon.engine.warm_up_calls
    with caplog.at_level(logging.WARNING):
        daemon.run_until_done()

    predictions = by_type(sent, "prediction")
    assert [p["window_index"] for p in predictions] == [k for k in range(len(reference)) if k not in failing]
    final = by_type(sent, "status")[-1]
    assert final["state"] == "finished" and daemon.errors == []
    assert final["counters"]["model_errors"] == len(failing)
    assert final["counters"]["windows"] == len(reference) - len(failing)
    for k in failing:
        window = reference[k]
        logged = [r.getMessage() for r in caplog.records if INJECTED in r.getMessage()]
        assert any(
            f"window {k}" in text or f"{window['t_start']:g}-{window['t_end']:g}" in text for text in logged
        ), (k, logged)


def test_model_that_fails_on_every_window_makes_the_run_fail(loaded: LoadedModel, clip_wav: Path) -> None:
    model = wrapped(loaded, lambda inner: FailingModel(inner, AfterWarmUp()))
    publisher, sent = collecting_publisher()
    daemon = Daemon(config(), [FileSource(clip_wav, speed=None)], model, publisher)
    model.model.skip = daemon.engine.warm_up_calls
    daemon.run_until_done()
    assert by_type(sent, "prediction") == []
    assert by_type(sent, "status")[-1]["counters"]["model_errors"] > 0
    # Not one window could be classified: the run must not look like a success (exit status 1).
    assert daemon.errors and INJECTED in " ".join(daemon.errors), daemon.errors


def test_overload_drops_counted_windows_in_bounded_queues_and_says_so(
    loaded: LoadedModel, known_audio: np.ndarray
) -> None:
    hop_s, queue_size = 0.1, 4
    cfg = with_windows(config(), WINDOW_S, hop_s)
    cfg.engine.queue_size = queue_size
    slow = wrapped(loaded, lambda inner: SlowModel(inner, seconds_per_window=0.25))  # 4 windows/s; 10 arrive
    source = FlakySource(known_audio, RATE, speed=1.0)
    publisher, sent = collecting_publisher()
    daemon = Daemon(cfg, [source], slow, publisher)
    assert daemon.policy == "drop_oldest"
    run_live(daemon)

    statuses = by_type(sent, "status")
    final = statuses[-1]["counters"]
    expected_windows = round((len(known_audio) / RATE - WINDOW_S) / hop_s) + 1
    assert final["dropped_windows"] > 0
    assert final["windows"] + final["dropped_windows"] == expected_windows, final
    assert len(by_type(sent, "prediction")) == final["windows"]
    assert "overloaded" in [s["state"] for s in statuses]
    assert max(s["counters"]["queue_depth"] for s in statuses) <= queue_size
    # Capture never waited for the model: every sample arrived, none overwritten.
    assert final["samples"] == len(known_audio) and final["overruns"] == 0 and final["lost_samples"] == 0


def test_periodic_status_says_device_error_while_the_source_has_failed(
    loaded: LoadedModel, known_audio: np.ndarray
) -> None:
    outage = Outage(at_s=1.0, duration_s=2.0, kind="error")
    source = FlakySource(known_audio, RATE, [outage], speed=2.0)
    publisher, sent = collecting_publisher()
    cfg = config(watchdog_s=0.5)
    cfg.publish.status_interval_s = 0.2
    daemon = Daemon(cfg, [source], loaded, publisher)
    run_live(daemon)

    statuses = by_type(sent, "status")
    states = [s["state"] for s in statuses]
    first_error = states.index("device_error")
    back = states.index("running", first_error)
    periodic = [s for s in statuses[first_error:back] if "reopening" not in s["message"]]
    assert len(periodic) >= 3, states[first_error:back]  # 2 s away, a status every 0.2 s
    assert all(s["state"] == "device_error" and INJECTED in s["message"] for s in periodic)
    assert not any(s["state"] == "running" and INJECTED in (s.get("message") or "") for s in statuses)
