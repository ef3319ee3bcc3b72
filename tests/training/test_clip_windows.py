"""A training clip longer than the model's window trains on windows spread over all of it (silent ones left
out), not on its first window alone: a 65-s recording gave 5 s, and one that began with 6 s of silence
was trained as labelled silence, without a word."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from own_clips import SR, loudest, write_class_folders

from audio_core.audio_file import read_audio
from models.common import FeatureConfig
from streamd.cli import main
from tests.support.paths import ESC50, esc50_rows
from training.cache import cached_fbanks, clip_fbank
from training.clip_windows import MAX_WINDOWS_PER_CLIP, training_windows, window_starts
from training.clips import Clip


@pytest.mark.parametrize("frames", [1, 47, 48, 49, 95, 96, 97, 480, 4801, 100_000])
def test_the_windows_cover_every_frame_evenly_within_the_cap(frames: int) -> None:
    window = 48
    starts = window_starts(frames, window)
    if frames <= window:
        assert starts == [0]
        return
    expected = min(MAX_WINDOWS_PER_CLIP, -(-frames // window))
    assert len(starts) == expected and starts[0] == 0 and starts[-1] == frames - window
    gaps = np.diff(starts)
    assert gaps.max() - gaps.min() <= 1  # evenly spread
    if expected < MAX_WINDOWS_PER_CLIP:
        assert gaps.max() <= window  # every frame in some window


def dog_after_silence(tmp_path: Path, silence_s: float = 6.0) -> tuple[Path, np.ndarray]:
    """6 s of digital silence, then 5 s of barking (a dog clip's loudest 0.5 s, ten times)."""
    row = next(r for r in esc50_rows() if r["category"] == "dog")
    bark = loudest(read_audio(ESC50 / "audio" / row["filename"], SR), 0.5)
    path = tmp_path / "late_dog.wav"
    barking = np.tile(bark, 10)
    sf.write(path, np.concatenate([np.zeros(int(silence_s * SR), np.float32), barking]), SR)
    return path, barking


def test_a_long_clip_gives_windows_over_all_of_it_and_its_silent_start_none(tmp_path: Path) -> None:
    path, _ = dog_after_silence(tmp_path)
    cfg = FeatureConfig()
    frames = 498  # 5 s
    windows = training_windows([Clip(str(path), [0])], cfg, tmp_path / "cache", frames)
    total = clip_fbank(path, cfg, tmp_path / "cache").shape[0]  # 11 s
    assert window_starts(total, frames) == [0, 300, 600]
    assert windows.clip == [0, 0] and windows.start_s == pytest.approx([3.0, 6.0])  # 0-5 s is silence
    assert windows.note() == (
        f"1 clip(s) longer than the 5-s window: trained on windows spread over each (up to "
        f"{MAX_WINDOWS_PER_CLIP}, silent ones left out): 2 windows from 1 clips"
    )
    x = cached_fbanks([Clip(str(path), [0])] * 2, cfg, tmp_path / "cache", frames, windows.start_s)
    whole = clip_fbank(path, cfg, tmp_path / "cache")
    assert np.array_equal(x[0], whole[300:798]) and np.array_equal(x[1], whole[600:1098])
    assert np.ptp(x[1]) > 0 and x[1].shape == (frames, cfg.num_mel_bins)


def test_a_clip_of_one_window_or_less_gives_its_start_as_before(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    sf.write(path, dog_after_silence(tmp_path)[1][: SR * 2], SR)
    windows = training_windows([Clip(str(path), [0])], FeatureConfig(), None, 498)
    assert windows.clip == [0] and windows.start_s == [0.0] and windows.note() is None


def test_own_data_trains_on_every_window_of_a_long_recording_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Class folders of 0.5-s clips (so a 0.5-s window) plus one 11-s recording whose first 6 s are
    silence: it trains on its windows that hold sound, counted in one line."""
    data = write_class_folders(tmp_path / "data", per_class=4)
    path, _ = dog_after_silence(tmp_path)
    wave = sf.read(path, dtype="float32")[0]
    (data / "dog" / "0_late_dog.wav").write_bytes(path.read_bytes())  # first by name: a training clip
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--data", str(data), "--epochs", "1", "--no-progress", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    (line,) = [line for line in (out + err).splitlines() if "longer than the" in line]
    cfg = FeatureConfig()
    window = 48  # 0.5 s of the other clips
    starts = window_starts(cfg.num_frames(wave.size), window)
    span = cfg.frame_length + (window - 1) * cfg.frame_shift
    heard = [s for s in starts if np.any(wave[s * cfg.frame_shift : s * cfg.frame_shift + span])]
    assert 10 <= len(heard) < len(starts) == 23
    trained_clips = 3 * 3 + 1  # each class's last clip is held out
    assert line.endswith(f"{trained_clips - 1 + len(heard)} windows from {trained_clips} clips"), line
