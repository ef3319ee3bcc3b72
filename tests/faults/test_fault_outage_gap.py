"""A device outage is a marked gap: the stream clock skips it, a status says so, no window spans it.

PulseAudio (this test's own virtual microphone) is killed during ``streamd run`` and restarted a few
seconds later. The daemon must publish a status whose ``t_start``/``t_end`` are the lost interval, count
the lost seconds (``outage_s``, ``outages``), keep ``t_end`` in step with the wall clock after recovery,
and classify no window that joins audio from both sides of the outage.
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
AWAY_S = 4.0  # how long PulseAudio stays dead
TOLERANCE_S = 0.5


def test_an_outage_advances_the_clock_and_no_window_spans_it(
    private_virtual_mic: VirtualMic, checkpoint: Path, known_audio: np.ndarray, endpoint: str, tmp_path: Path
) -> None:
    mic = private_virtual_mic
    config = tmp_path / "daemon.toml"
    config.write_text("[capture]\nwatchdog_s = 1.0\n")
    args = ["run", "--device", "default", "--config", config, "--checkpoint", checkpoint]
    args += ["--publish", endpoint, "--window", "1", "--hop", "0.5", "--status-interval", "0.25"]
    daemon = StreamdProcess([str(a) for a in (*args, "--no-dashboard", "--json")], env=mic.env)

    def predictions() -> list[dict]:
        return [m for m in daemon.json_lines() if m["type"] == "prediction"]

    with daemon:
        daemon.start()
        assert daemon.wait_for_json(lambda m: m["type"] == "status", START_TIMEOUT_S), daemon.stderr_text()
        with mic.feed(np.tile(known_audio, 6)) as feeder:
            assert daemon.wait_for(lambda p: len(predictions()) >= 4, 20.0), daemon.stderr_text()
            killed = time.monotonic()
            mic.kill()
            time.sleep(AWAY_S)
            mic.start()
            restarted = time.monotonic()
            gap = daemon.wait_for_json(lambda m: "device outage" in m.get("message", ""), 20.0)
            assert gap is not None, daemon.stderr_text()
            after = len(predictions())
            assert daemon.wait_for(lambda p: len(predictions()) >= after + 4, 15.0), "capture did not resume"
            assert feeder.error is None
            daemon.send_signal(signal.SIGTERM)
            result = daemon.wait(10.0)

    assert result.returncode == 0, result.describe()
    assert_no_traceback(result)
    published = result.json_lines()
    gaps = [m for m in published if m["type"] == "status" and "device outage" in m.get("message", "")]
    assert len(gaps) == 1, [g["message"] for g in gaps]
    start, end = gaps[0]["t_start"], gaps[0]["t_end"]
    lost_s = end - start
    # The device was certainly gone from the kill to the restart; audio flows again soon after.
    assert lost_s > restarted - killed - TOLERANCE_S, (lost_s, restarted - killed)
    # No window joins audio from both sides; the clock follows the wall clock across the outage.
    preds = [m for m in published if m["type"] == "prediction"]
    assert all(p["t_end"] <= start + 1e-6 or p["t_start"] >= end - 1e-6 for p in preds)
    before = [p["wall_time"] - p["t_end"] for p in preds if p["t_end"] <= start][-3:]
    later = [p["wall_time"] - p["t_end"] for p in preds if p["t_start"] >= end][2:5]
    drift = float(np.median(later) - np.median(before))
    assert abs(drift) < TOLERANCE_S, f"wall_time - t_end moved by {drift:.3f} s across the outage"
    indices = [p["window_index"] for p in preds]
    assert indices == list(range(len(indices)))
    final = [m for m in published if m["type"] == "status"][-1]["counters"]
    assert final["outages"] == 1 and final["outage_s"] == pytest.approx(lost_s, abs=1e-3)
    # PortAudio's and ALSA's own prints during the outage came through the logger, counted, never raw.
    raw = [line for line in result.stderr.splitlines() if line.startswith(("ALSA lib", "Expression '"))]
    assert not raw, raw[:5]
    logged = ("streamd: warning: portaudio: ", "streamd: warning: alsa: ")  # through the logger
    routed = [line for line in result.stderr.splitlines() if line.startswith(logged)]
    assert final["native_stderr_lines"] >= 1 and len(routed) >= final["native_stderr_lines"], routed[:5]
    print(f"outage: killed for {restarted - killed:.2f} s, lost {lost_s:.3f} s, drift {drift:+.3f} s")
    print(f"native stderr lines routed through the logger: {len(routed)}")
