"""A daemon paused longer than its device's buffer (SIGSTOP, a suspended VM) loses audio: a marked gap.

While ``streamd run`` is stopped, PulseAudio keeps recording into the stream's buffer and, once it is
full, drops the rest without telling the client. On resume the backlog arrives in a burst. The daemon
must measure what never came (the wall clock ran on, the audio did not), publish it as a gap and keep
its stream time in step with the wall clock after it.
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
# paused within what PulseAudio buffers for the stream (about 12 s measured), and well beyond it
PAUSES_S = {"within the buffer": 4.0, "beyond the buffer": 20.0}
TOLERANCE_S = 0.5


@pytest.mark.parametrize("pause", list(PAUSES_S))
def test_audio_lost_while_the_daemon_was_paused_is_a_marked_gap(
    pause: str, private_virtual_mic: VirtualMic, checkpoint: Path, known_audio: np.ndarray, endpoint: str
) -> None:
    mic = private_virtual_mic
    args = ["run", "--device", "default", "--checkpoint", checkpoint, "--publish", endpoint]
    args += ["--window", "1", "--hop", "0.5", "--status-interval", "0.25", "--no-dashboard", "--json"]
    daemon = StreamdProcess([str(a) for a in args], env=mic.env)

    def predictions() -> list[dict]:
        return [m for m in daemon.json_lines() if m["type"] == "prediction"]

    with daemon:
        daemon.start()
        assert daemon.wait_for_json(lambda m: m["type"] == "status", START_TIMEOUT_S), daemon.stderr_text()
        with mic.feed(np.tile(known_audio, 10)) as feeder:
            assert daemon.wait_for(lambda p: len(predictions()) >= 4, 20.0), daemon.stderr_text()
            daemon.send_signal(signal.SIGSTOP)
            time.sleep(PAUSES_S[pause])
            daemon.send_signal(signal.SIGCONT)
            after = len(predictions())
            assert daemon.wait_for(lambda p: len(predictions()) >= after + 30, 30.0), "capture did not resume"
            assert feeder.error is None
            daemon.send_signal(signal.SIGTERM)
            result = daemon.wait(10.0)

    assert result.returncode == 0, result.describe()
    assert_no_traceback(result)
    published = result.json_lines()
    preds = [m for m in published if m["type"] == "prediction"]
    gaps = [m for m in published if m["type"] == "status" and "no audio from" in m.get("message", "")]
    final = [m for m in published if m["type"] == "status"][-1]["counters"]
    lost_s = sum(g["t_end"] - g["t_start"] for g in gaps)
    assert final["outages"] == len(gaps) and final["outage_s"] == pytest.approx(lost_s, abs=1e-3)
    if pause == "within the buffer":
        assert not gaps, [g["message"] for g in gaps]  # the backlog came whole: nothing to mark
    else:
        assert len(gaps) == 1 and lost_s > 2.0, [g["message"] for g in gaps]
    # After the pause the stream clock is in step with the wall clock again, and no window spans a gap.
    split = gaps[0]["t_start"] if gaps else preds[3]["t_end"]
    before = [p["wall_time"] - p["t_end"] for p in preds if p["t_end"] <= split][:3]
    later = [p["wall_time"] - p["t_end"] for p in preds][-5:]
    drift = float(np.median(later) - np.median(before))
    assert abs(drift) < TOLERANCE_S, f"wall_time - t_end moved by {drift:.3f} s across the pause"
    for gap in gaps:
        assert all(p["t_end"] <= gap["t_start"] + 1e-6 or p["t_start"] >= gap["t_end"] - 1e-6 for p in preds)
