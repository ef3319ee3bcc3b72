"""Privacy filter of event clips: real speech (spoken by espeak-ng) is found and its clip dropped; real
ESC-50 sounds (a dog bark, rain) are kept; a filter that cannot load is reported once and fails closed."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import soundfile as sf

from audio_core.resample import resample_offline
from streamd import messages, privacy
from streamd.clips import ClipRecorder
from streamd.config import load_config
from streamd.config_sections import ClipsSection
from streamd.errors import ConfigError
from streamd.privacy import SpeechDetector, longest_run

RATE = 16000
SENTENCE = "The meeting moved to Thursday afternoon. Please bring the quarterly report with you."


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, int]:
    """A real spoken sentence (espeak-ng's own rate, mono float32)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    path = tmp_path_factory.mktemp("speech") / "sentence.wav"
    subprocess.run([espeak, "-w", str(path), SENTENCE], check=True, timeout=60)
    data, rate = sf.read(str(path), dtype="float32")
    return data, rate


def _esc50(esc50, category: str) -> np.ndarray:
    from support.paths import ESC50, esc50_rows

    row = next(r for r in esc50_rows() if r["category"] == category and r["fold"] == "1")
    return esc50.read_mono(ESC50 / "audio" / row["filename"])


@pytest.fixture(scope="module")
def detector() -> SpeechDetector:
    d = SpeechDetector()
    assert d.available(), d.error
    return d


def test_longest_run() -> None:
    assert longest_run(np.array([0, 1, 1, 0, 1, 1, 1, 0], bool)) == 3
    assert longest_run(np.zeros(4, bool)) == 0


def test_speech_is_found_at_any_rate_and_layout(detector: SpeechDetector, speech) -> None:
    data, rate = speech
    assert rate != RATE  # the filter resamples
    probs = detector.frame_probabilities(data, rate)
    assert probs.size == int(np.ceil(data.size * RATE / rate / 512))
    assert longest_run(probs >= 0.5) * 512 / RATE >= 1.0  # a whole sentence: seconds of speech
    assert detector.has_speech(data, rate)
    stereo48 = resample_offline(data, rate, 48000)[:, None].repeat(2, axis=1)
    assert detector.has_speech(stereo48, 48000)


@pytest.mark.parametrize("category", ["dog", "rain"])
def test_real_non_speech_is_kept(detector: SpeechDetector, esc50, category: str) -> None:
    assert not detector.has_speech(_esc50(esc50, category), RATE)


def test_recorder_drops_the_speech_clip_and_keeps_the_dog(tmp_path: Path, speech, esc50) -> None:
    spoken = resample_offline(speech[0], speech[1], RATE)
    dog = _esc50(esc50, "dog")
    audio = np.concatenate([spoken, dog])[:, None]
    split = spoken.size / RATE
    cfg = ClipsSection(dir=str(tmp_path / "clips"), pre_roll_s=0, post_roll_s=0, privacy="drop_speech")
    recorder = ClipRecorder(cfg, [("s", RATE, 1)])
    recorder.tap(0, 0, audio)
    said = recorder.on_event(0, messages.event("s", "speech", "end", 0.0, split, 0.9))
    barked = recorder.on_event(0, messages.event("s", "dog", "end", split, audio.shape[0] / RATE, 0.9))
    recorder.close(timeout=300)
    assert not Path(said["clip"]).exists() and not Path(said["clip"]).with_suffix(".json").exists()
    kept, _ = sf.read(barked["clip"], dtype="float32")
    np.testing.assert_array_equal(kept, dog)
    counters = recorder.counters_for(0)
    assert counters["clips_dropped_speech"] == 1 and counters["clips_saved"] == 1
    assert counters["clips_unchecked"] == 0 and counters["clip_write_errors"] == 0
    status = messages.status("s", 0, 1, messages.empty_counters() | counters, "running", wall_time=1.0)
    jsonschema.validate(status, messages.load_schema())


def test_a_filter_that_cannot_load_is_logged_once_and_saves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, clips: list[Path]
) -> None:
    monkeypatch.setattr(privacy, "MODEL_FILE", ("data", "no_such_model.jit"))
    audio = sf.read(str(clips[0]), dtype="float32", always_2d=True)[0]
    cfg = ClipsSection(dir=str(tmp_path / "clips"), pre_roll_s=0, post_roll_s=0, privacy="drop_speech")
    recorder = ClipRecorder(cfg, [("s", RATE, 1)])
    recorder.tap(0, 0, audio)
    with caplog.at_level(logging.ERROR, logger="streamd.privacy"):
        for t in (0.0, 1.0, 2.0):
            recorder.on_event(0, messages.event("s", "dog", "end", t, t + 1.0, 0.9))
        recorder.close()
    assert recorder.counters["clips_unchecked"] == 3 and recorder.saved == 0
    assert not list(tmp_path.rglob("*.flac"))
    assert len([r for r in caplog.records if "privacy filter unavailable" in r.message]) == 1


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ('privacy = "blur"', "clips.privacy must be one of off, drop_speech"),
        ("speech_threshold = 1.5", "clips.speech_threshold must be at most 1"),
        ("min_speech_s = 0", "clips.min_speech_s must be positive"),
    ],
)
def test_privacy_settings_are_checked(tmp_path: Path, line: str, error: str) -> None:
    path = tmp_path / "daemon.toml"
    path.write_text(f"[clips]\n{line}\n")
    with pytest.raises(ConfigError, match=error):
        load_config(path)
