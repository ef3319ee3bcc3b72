"""A real input device that stalls, disappears and comes back during ``streamd run``.

The device is a PulseAudio virtual microphone of this test's own: the feeder pausing is a stalled
device (the watchdog must notice and restart capture); killing PulseAudio is a device that disappears
(a status, retries, and capture resumes once PulseAudio is back). SIGTERM then ends the run cleanly.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest
from support.process import StreamdProcess, assert_no_traceback
from support.virtual_mic import VirtualMic

pytestmark = pytest.mark.live

START_TIMEOUT_S = 60.0
WATCHDOG_S = 1.0
STOP_LIMIT_S = 2.0


def statuses(daemon: StreamdProcess) -> list[dict]:
    return [m for m in daemon.json_lines() if m["type"] == "status"]


def wait_for_state(daemon: StreamdProcess, state: str, after: int, timeout: float) -> int:
    """Index (among statuses) of the first ``state`` status after index ``after``; fails on timeout."""
    found: list[int] = []

    def seen(p: StreamdProcess) -> bool:
        found[:] = [i for i, s in enumerate(statuses(p)) if i > after and s["state"] == state][:1]
        return bool(found)

    assert daemon.wait_for(seen, timeout), (
        state,
        [s["state"] for s in statuses(daemon)],
        daemon.stderr_text(),
    )
    return found[0]


def samples_now(daemon: StreamdProcess) -> int:
    return statuses(daemon)[-1]["counters"]["samples"]


def test_stalled_and_vanished_device_are_reported_and_capture_resumes(
    private_virtual_mic: VirtualMic, checkpoint: Path, known_audio: np.ndarray, endpoint: str, tmp_path: Path
) -> None:
    mic = private_virtual_mic
    config = tmp_path / "daemon.toml"
    config.write_text(f"[capture]\nwatchdog_s = {WATCHDOG_S}\n")
    args = [
        "run",
        "--device",
        "default",
        "--config",
        config,
        "--checkpoint",
        checkpoint,
        "--publish",
        endpoint,
    ]
    args += ["--window", "1", "--hop", "0.5", "--status-interval", "0.25", "--no-dashboard", "--json"]
    daemon = StreamdProcess([str(a) for a in args], env=mic.env)
    audio = np.tile(known_audio, 6)  # 30 s: more than the test needs
    with daemon:
        daemon.start()
        assert daemon.wait_for_json(lambda m: m["type"] == "status", START_TIMEOUT_S), daemon.stderr_text()
        with mic.feed(audio) as feeder:
            running = wait_for_state(daemon, "running", 0, 10.0)

            # -- a stalled device: no audio for longer than the watchdog ---------------------------
            assert daemon.wait_for(lambda p: samples_now(p) > 16000, 10.0)
            feeder.pause()
            stalled = wait_for_state(daemon, "stalled", running, 3 * WATCHDOG_S + 2.0)
            feeder.resume()
            back = wait_for_state(daemon, "running", stalled, 10.0)
            before = samples_now(daemon)
            assert daemon.wait_for(lambda p: samples_now(p) > before + 8000, 10.0), "capture did not resume"

            # -- the device disappears (PulseAudio killed) and comes back ---------------------------
            mic.kill()
            lost = wait_for_state(daemon, "device_error", back, 3 * WATCHDOG_S + 5.0)
            time.sleep(3.0)  # the device stays away for a while: the daemon keeps retrying
            mic.start()
            recovered = wait_for_state(daemon, "running", lost, 20.0)
            before = samples_now(daemon)
            assert daemon.wait_for(lambda p: samples_now(p) > before + 16000, 15.0), "capture did not resume"
            assert feeder.error is None and feeder.reopens >= 1

            signalled = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            result = daemon.wait(10.0)
            stop_s = time.monotonic() - signalled

    assert result.returncode == 0, result.describe()
    assert stop_s < STOP_LIMIT_S, f"{stop_s:.2f} s from SIGTERM to exit"
    assert_no_traceback(result)
    published = result.json_lines()
    states = [m["state"] for m in published if m["type"] == "status"]
    assert states[-1] == "stopped" and published[-1]["type"] == "status"
    all_statuses = [m for m in published if m["type"] == "status"]
    assert "no audio for" in all_statuses[stalled]["message"]
    assert all_statuses[lost]["message"], "a device error must say what happened"
    final = all_statuses[-1]["counters"]
    assert final["restarts"] >= 2, final
    # Retries back off: a few reopen attempts while the device was away (about 3 s), not a busy loop.
    retries = all_statuses[recovered]["counters"]["restarts"] - all_statuses[lost]["counters"]["restarts"]
    assert 1 <= retries <= 8, retries
    assert recovered > lost
    # Predictions came on after the device returned, contiguous in stream time.
    predictions = [m for m in published if m["type"] == "prediction"]
    indices = [p["window_index"] for p in predictions]
    assert indices == list(range(len(indices)))
    assert predictions[-1]["t_end"] > all_statuses[recovered]["t_end"]
