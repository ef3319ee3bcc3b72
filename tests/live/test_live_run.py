"""The live path end to end: a known recording played into a PulseAudio virtual microphone, captured by
``streamd run`` through PortAudio, classified, published over ZeroMQ and heard by ``streamd listen``.

What arrives must be the recording: each window's level matches the recording's at one common delay,
and each window's scores match the checkpoint's scores of that stretch of the recording, computed
offline the plain way. Nothing may be lost between the daemon and the listener, and Ctrl-C must end the
daemon cleanly within two seconds with a final status.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from support.checkpoints import small_resnet_checkpoint
from support.paths import esc10_clips
from support.process import StreamdProcess, assert_no_traceback
from support.reference import ReferenceScorer, best_offset, shifted
from support.virtual_mic import VirtualMic

pytestmark = pytest.mark.live

RATE = 16000
WINDOW_S = 5.0
HOP_S = 1.0
START_TIMEOUT_S = 60.0  # torch import and model load on a busy 2-core machine
STOP_LIMIT_S = 2.0
MAX_LEVEL_ERROR_DB = 0.25  # measured: 0.013 dB
MAX_DELAY_S = 0.15  # measured: 5 ms
MAX_SCORE_ERROR = 0.02  # measured: 0.0027


@pytest.fixture(scope="module")
def sharp_checkpoint(tmp_path_factory: pytest.TempPathFactory, labels: list[str]) -> Path:
    """Random weights whose scores visibly depend on the audio (a large output-layer gain)."""
    return small_resnet_checkpoint(
        tmp_path_factory.mktemp("sharp") / "sharp.safetensors", labels, head_gain=100.0
    )


@pytest.fixture(scope="module")
def recording(known_audio: np.ndarray) -> np.ndarray:
    """Ten seconds of real sound: the known chainsaw clip, then an ESC-10 dog clip."""
    dog, rate = sf.read(esc10_clips(1)[0], dtype="float32")
    assert rate == RATE
    return np.concatenate([known_audio, dog])


def _statuses(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m["type"] == "status"]


def _predictions(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m["type"] == "prediction"]


def test_live_run_hears_the_recording_and_publishes_it_all(
    virtual_mic: VirtualMic, sharp_checkpoint: Path, recording: np.ndarray, endpoint: str
) -> None:
    duration_s = len(recording) / RATE
    run_args = ["run", "--device", "default", "--checkpoint", sharp_checkpoint, "--publish", endpoint]
    run_args += ["--window", WINDOW_S, "--hop", HOP_S, "--top-k", "50", "--status-interval", "0.5"]
    run_args += ["--no-dashboard", "--json"]
    daemon = StreamdProcess([str(a) for a in run_args], env=virtual_mic.env)
    # The listener may start first: a SUB socket keeps retrying until the publisher binds.
    listener = StreamdProcess(["listen", "--connect", endpoint, "--seconds", "120"])
    with listener, daemon:
        listener.start()
        daemon.start()
        started = daemon.wait_for_json(lambda m: m["type"] == "status", START_TIMEOUT_S)
        assert started is not None and started["state"] == "starting", daemon.stderr_text()
        with virtual_mic.feed(recording) as feeder:
            assert feeder.audio_done.wait(duration_s + 15.0), "the feeder fell behind"
            # Wait for the first window that reaches past the end of the recording.
            last = daemon.wait_for_json(
                lambda m: m["type"] == "prediction" and m["t_end"] >= duration_s + HOP_S, 15.0
            )
            assert last is not None, f"no window past the recording's end\n{daemon.stderr_text()}"
            fed_s = (feeder.written + feeder.silence_written) / RATE
            signalled = time.monotonic()
            daemon.send_signal(signal.SIGINT)
            result = daemon.wait(10.0)
            stop_s = time.monotonic() - signalled
        assert feeder.error is None and feeder.skipped == 0
        time.sleep(0.5)  # the last messages are on their way to the listener
        listener.send_signal(signal.SIGINT)
        heard = listener.wait(10.0)

    # -- the daemon stopped cleanly, in time, saying so ---------------------------------------------------
    assert result.returncode == 0, result.describe()
    assert stop_s < STOP_LIMIT_S, f"took {stop_s:.2f} s to stop after SIGINT"
    assert_no_traceback(result)
    assert not [line for line in result.stderr_lines if "error" in line.lower()], result.describe()
    published = result.json_lines()
    statuses = _statuses(published)
    assert statuses[0]["state"] == "starting" and published[-1] is statuses[-1]
    assert statuses[-1]["state"] == "stopped"
    assert not [s for s in statuses if s["state"] in ("stalled", "device_error", "overloaded")]
    final = statuses[-1]["counters"]
    for counter in (
        "dropped_windows",
        "overruns",
        "model_errors",
        "restarts",
        "publish_dropped",
        "lost_samples",
    ):
        assert final[counter] == 0, (counter, final)
    # Every sample fed reached the pipeline (allowing the device's buffering at the moment of the signal).
    assert abs(final["samples"] / RATE - fed_s) < 0.5, (final["samples"] / RATE, fed_s)

    # -- windows: contiguous, and they hold the recording --------------------------------------------------
    predictions = _predictions(published)
    assert [p["window_index"] for p in predictions] == list(range(len(predictions)))
    spans = [(p["t_start"], p["t_end"]) for p in predictions]
    assert spans == [(k * HOP_S, k * HOP_S + WINDOW_S) for k in range(len(predictions))]
    assert len(predictions) >= int(duration_s - WINDOW_S) + 2
    assert final["windows"] == len(predictions)
    levels = np.array([p["level_dbfs"] for p in predictions])
    delay_s, level_error_db = best_offset(recording, spans, levels, RATE)
    assert abs(delay_s) < MAX_DELAY_S and level_error_db < MAX_LEVEL_ERROR_DB, (
        delay_s,
        level_error_db,
        levels,
    )

    scorer = ReferenceScorer(sharp_checkpoint)
    stream = shifted(recording, round(delay_s * RATE), round((spans[-1][1] + 1) * RATE))
    worst = 0.0
    for p in predictions:
        live = {item["label"]: item["score"] for item in p["labels"]}
        assert len(live) == len(scorer.labels)
        expected = scorer.scores(stream, p["t_start"], p["t_end"])
        got = np.array([live[name] for name in scorer.labels])
        assert int(np.argmax(got)) == int(np.argmax(expected)), (p["t_start"], got.max(), expected.max())
        worst = max(worst, float(np.max(np.abs(got - expected))))
    assert worst < MAX_SCORE_ERROR, worst

    # -- the listener heard every prediction and the final status, unchanged ---------------------------
    assert heard.returncode == 0, heard.describe()
    heard_messages = heard.json_lines()
    assert _predictions(heard_messages) == predictions
    assert heard_messages[-1] == statuses[-1]


def test_run_check_opens_nothing_and_names_the_device_rate(
    virtual_mic: VirtualMic, sharp_checkpoint: Path, endpoint: str
) -> None:
    """``run --check`` on the live microphone: the device is found and described, nothing is captured."""
    args = ["run", "--device", "default", "--checkpoint", str(sharp_checkpoint), "--publish", endpoint]
    check = StreamdProcess([*args, "--no-dashboard", "--check"], env=virtual_mic.env)
    with check:
        check.start()
        result = check.wait(START_TIMEOUT_S)
    assert result.returncode == 0, result.describe()
    assert_no_traceback(result)
    out = result.stdout
    assert f"{virtual_mic.rate} Hz" in out and "check passed: 1 stream(s)" in out, result.describe()
