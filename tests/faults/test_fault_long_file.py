"""Files of hours: replayed flat out (and classified) in constant memory.

A three-hour 8 kHz 16-bit WAV (173 MB; 691 MB as 16 kHz float32) made of a real recording goes through
``streamd replay --speed max``; the resident memory of the process, sampled as it runs, must stay flat
and close to that of replaying a five-second clip. ``streamd classify`` gets a 20-minute file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soxr
from support.bad_files import write_long_wav
from support.process import Result, run_streamd

LONG_RATE = 8000
HOURS = 3.0
HOP_S = 60.0  # few windows: the test is about reading, resampling and features, not the model
MAX_GROWTH_MB = 20.0  # the second half's largest RSS never exceeds the first half's by more
MAX_OVER_SHORT_MB = 40.0  # nor the peak of replaying a 5-s clip by more than this


@pytest.fixture(scope="module")
def audio_8k(known_audio: np.ndarray) -> np.ndarray:
    return soxr.resample(known_audio, 16000, LONG_RATE).astype(np.float32)


@pytest.fixture(scope="module")
def three_hours(tmp_path_factory: pytest.TempPathFactory, audio_8k: np.ndarray) -> Path:
    return write_long_wav(tmp_path_factory.mktemp("long") / "three_hours.wav", audio_8k, LONG_RATE, HOURS)


@pytest.fixture(scope="module")
def twenty_minutes(tmp_path_factory: pytest.TempPathFactory, audio_8k: np.ndarray) -> Path:
    return write_long_wav(tmp_path_factory.mktemp("long") / "twenty_minutes.wav", audio_8k, LONG_RATE, 1 / 3)


def replay(path: Path, checkpoint: Path, endpoint: str) -> Result:
    args = ["replay", path, "--speed", "max", "--checkpoint", checkpoint, "--publish", endpoint]
    return run_streamd(
        *args, "--hop", HOP_S, "--status-interval", "5", "--no-dashboard", "--json", timeout=300
    )


def assert_flat(result: Result) -> tuple[float, float]:
    """(the largest RSS of the run's first half, that of its second half), checked to be within the limit:
    memory that keeps growing shows in the second half, while a one-time step early in the run stays in
    the first (measured against the RSS at the first quarter's end, a full test run once read 33 MB of
    growth that four runs of this test alone did not show)."""
    samples = np.array([mb for _, mb in result.rss_samples_mb])
    assert len(samples) >= 20, "too few memory samples"
    half = len(samples) // 2
    settled, later = float(samples[:half].max()), float(samples[half:].max())
    assert later - settled < MAX_GROWTH_MB, (settled, later)
    return settled, later


def test_three_hour_file_replays_flat_out_in_constant_memory(
    three_hours: Path, known_clip: Path, checkpoint: Path, endpoint: str
) -> None:
    short = replay(known_clip, checkpoint, endpoint)
    assert short.returncode == 0, short.describe()
    result = replay(three_hours, checkpoint, endpoint)
    skipped = "streamd: warning: hop 60 s is longer than the window 5 s: 55 s of every hop is not classified"
    sparse = "streamd: warning: an event needs 2 windows in a row at or above its threshold: at hop 60 s"
    lines = result.stderr_lines
    assert result.returncode == 0 and lines[0] == skipped and len(lines) == 2, result.describe()
    assert lines[1].startswith(sparse), result.describe()  # nothing else
    published = result.json_lines()
    final = published[-1]
    assert final["type"] == "status" and final["state"] == "finished"
    counters = final["counters"]
    assert counters["samples"] == round(HOURS * 3600 * 16000)
    predictions = [m for m in published if m["type"] == "prediction"]
    assert counters["windows"] == len(predictions) and counters["dropped_windows"] == 0
    assert predictions[-1]["t_end"] == pytest.approx(HOURS * 3600, abs=HOP_S)
    _, later = assert_flat(result)
    assert later - short.peak_rss_mb < MAX_OVER_SHORT_MB, (later, short.peak_rss_mb)


def test_long_file_is_classified_in_constant_memory(
    twenty_minutes: Path, known_clip: Path, checkpoint: Path
) -> None:
    short = run_streamd("classify", known_clip, "--checkpoint", checkpoint, timeout=120)
    long = run_streamd("classify", twenty_minutes, "--checkpoint", checkpoint, "--hop-s", HOP_S, timeout=300)
    assert short.returncode == 0 and long.returncode == 0, long.describe()
    assert len(long.stdout_lines) == 1
    assert long.peak_rss_mb - short.peak_rss_mb < MAX_OVER_SHORT_MB, (long.peak_rss_mb, short.peak_rss_mb)
