"""Event clips when the audio runs far ahead of the results (a replay at --speed max, a long hold), events
longer than max_clip_s, clips whose audio is gone, and a max_bytes below one clip."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamd import clips as clips_module
from streamd import messages
from streamd.audio_history import AudioHistory
from streamd.clips import ClipRecorder
from streamd.config_sections import ClipsSection

RATE = 16000


def _long_audio(clips: list[Path], seconds: float) -> np.ndarray:
    """Real audio (the clips repeated) of ``seconds``."""
    one = np.concatenate([sf.read(str(p), dtype="float32", always_2d=True)[0] for p in clips])
    return np.tile(one, (int(np.ceil(seconds * RATE / one.shape[0])), 1))[: round(seconds * RATE)]


def _feed(recorder: ClipRecorder, audio: np.ndarray, start: int, upto: int) -> None:
    for pos in range(start, upto, 3000):
        recorder.tap(0, pos, audio[pos : min(upto, pos + 3000)])


def _published(recorder: ClipRecorder, t: float) -> None:
    """The publisher sent the prediction of the window [t - 5, t]."""
    recorder(messages.prediction("s", max(0.0, t - 5.0), t, "m", [("dog", 0.9)], 1.0))


def _clip(event: dict) -> tuple[np.ndarray, dict]:
    data, rate = sf.read(event["clip"], dtype="float32", always_2d=True)
    assert rate == RATE
    return data, json.loads(Path(event["clip"]).with_suffix(".json").read_text())


def test_history_forgets_what_its_owner_no_longer_needs() -> None:
    rng = np.random.default_rng(4)
    audio = rng.standard_normal((40_000, 1)).astype(np.float32)
    history = AudioHistory(100_000, 1)
    pos, forgotten = 0, 0
    while pos < audio.shape[0]:
        n = int(rng.integers(1, 3000))
        history.write(pos, audio[pos : pos + n])
        pos = min(audio.shape[0], pos + n)
        forgotten = max(forgotten, int(rng.integers(forgotten, pos + 1)) if rng.random() < 0.3 else 0)
        history.forget_before(forgotten)
        first, got = history.read(0, pos)
        assert first == min(forgotten, pos) == history.oldest
        np.testing.assert_array_equal(got, audio[first:pos])


def test_clips_are_whole_when_the_audio_runs_far_ahead_of_the_results(
    tmp_path: Path, clips: list[Path]
) -> None:
    """Audio 40 s ahead of the published results, a 10-s event, hold 8 s, max_clip_s 11: the clip was cut
    from a history of max_clip_s seconds (its first 4-7 s lost); the results now set what is kept."""
    audio = _long_audio(clips, 90.0)
    cfg = ClipsSection(dir=str(tmp_path / "c"), pre_roll_s=0.5, post_roll_s=0.5, max_clip_s=11.0)
    recorder = ClipRecorder(cfg, [("s", RATE, 1)], lead_s=2.0, hold_s=8.0)
    ahead = 40 * RATE
    for t in range(5, 31):  # the results reach t s while the feature stage has read t + 40 s
        _feed(recorder, audio, (t - 1) * RATE + ahead if t > 5 else 0, t * RATE + ahead)
        _published(recorder, float(t))
        if t == 12:
            recorder.on_event(0, messages.event("s", "dog", "start", 10.0, 12.0, 0.9))
    end = recorder.on_event(0, messages.event("s", "dog", "end", 10.0, 20.0, 0.9))
    _feed(recorder, audio, 30 * RATE + ahead, audio.shape[0])
    recorder.close()
    data, sidecar = _clip(end)
    assert recorder.counters["clips_truncated"] == 0 and recorder.counters["clips_lost"] == 0
    assert sidecar["clip_start_s"] == 9.5 and sidecar["clip_end_s"] == 20.5
    np.testing.assert_allclose(data, audio[round(9.5 * RATE) : round(20.5 * RATE)], atol=2**-22)
    assert recorder.history[0].oldest == 21.5 * RATE  # the newest window [25, 30] s less lead and pre-roll


def test_an_event_longer_than_max_clip_keeps_its_end_and_is_counted(
    tmp_path: Path, clips: list[Path]
) -> None:
    audio = _long_audio(clips, 40.0)
    cfg = ClipsSection(dir=str(tmp_path / "c"), pre_roll_s=1.0, post_roll_s=1.0, max_clip_s=10.0)
    recorder = ClipRecorder(cfg, [("s", RATE, 1)], lead_s=2.0, hold_s=2.0)
    recorder.on_event(0, messages.event("s", "dog", "start", 2.0, 7.0, 0.9))
    for t in range(1, 34):  # the end is announced once the results pass its last hit (32 s) by hold_s
        _feed(recorder, audio, (t - 1) * RATE, t * RATE)
        _published(recorder, float(t))
    end = recorder.on_event(0, messages.event("s", "dog", "end", 2.0, 32.0, 0.9))
    _feed(recorder, audio, 33 * RATE, audio.shape[0])
    recorder.close()
    data, sidecar = _clip(end)
    assert (sidecar["clip_start_s"], sidecar["clip_end_s"]) == (21.0, 33.0)  # its last 10 s and the rolls
    np.testing.assert_allclose(data, audio[21 * RATE : 33 * RATE], atol=2**-22)
    assert recorder.counters["clips_truncated"] == 1 and recorder.counters["clips_saved"] == 1


def test_an_event_whose_audio_is_gone_names_no_clip_and_is_counted(
    tmp_path: Path, clips: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond the history's headroom (results stalled while audio came on) the audio is gone: the end
    message names no clip file that will never exist, and the loss is counted."""
    monkeypatch.setattr(clips_module, "HEADROOM_S", 0.0)
    audio = _long_audio(clips, 60.0)
    cfg = ClipsSection(dir=str(tmp_path / "c"), pre_roll_s=0.0, post_roll_s=0.0, max_clip_s=5.0)
    recorder = ClipRecorder(cfg, [("s", RATE, 1)])
    _feed(recorder, audio, 0, audio.shape[0])  # 60 s read; the history holds 5 + 1 s of it
    end = recorder.on_event(0, messages.event("s", "dog", "end", 2.0, 4.0, 0.9))
    recorder.close()
    assert "clip" not in end
    assert recorder.counters["clips_lost"] == 1 and recorder.saved == 0
    assert not list((tmp_path / "c").glob("*.flac"))


def test_a_max_bytes_below_one_clip_keeps_the_newest_and_says_so(
    tmp_path: Path, clips: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    audio = _long_audio(clips, 15.0)
    cfg = ClipsSection(dir=str(tmp_path / "c"), pre_roll_s=0, post_roll_s=0, max_bytes=100)
    recorder = ClipRecorder(cfg, [("s", RATE, 1)])
    _feed(recorder, audio, 0, audio.shape[0])
    with caplog.at_level(logging.WARNING):
        ends = [recorder.on_event(0, messages.event("s", "dog", "end", t, t + 1.0, 0.9)) for t in (1.0, 4.0)]
        recorder.close()
    assert recorder.saved == 2
    assert sorted((tmp_path / "c").glob("*.flac")) == [Path(ends[1]["clip"])]  # the newest only
    assert sum("less than one clip" in r.getMessage() for r in caplog.records) == 1


def test_a_replay_at_full_speed_lets_go_of_audio_as_its_results_arrive(
    tmp_path: Path, clips: list[Path], small_checkpoint: Path
) -> None:
    """Through the daemon: the recorder hears the published results (a sink), so a 60-s event of a file
    read far ahead of them keeps its last max_clip_s whole, and without events the history lets go."""
    from pipeline_helpers import Pipeline

    from streamd.config import DaemonConfig
    from streamd.file_source import FileSource
    from streamd.model_loading import load_model

    audio = _long_audio(clips, 60.0)
    sf.write(tmp_path / "long.wav", audio, RATE)
    cfg = DaemonConfig()
    cfg.events.allow, cfg.events.threshold, cfg.events.min_hits = ["dog"], 0.0, 1  # one event, all along
    cfg.clips.dir, cfg.clips.max_clip_s = str(tmp_path / "clips"), 5.0
    pipe = Pipeline(
        cfg, [FileSource(tmp_path / "long.wav", speed=None)], load_model(small_checkpoint, compute="cpu")
    )
    pipe.run_to_end()
    (end,) = [e for e in pipe.of("event") if e["state"] == "end"]
    data, sidecar = _clip(end)
    # [t_end + post-roll - (pre-roll + 5 s + post-roll), t_end]: the stream ended at the event's end
    assert (sidecar["clip_start_s"], sidecar["clip_end_s"]) == (53.0, 60.0)
    np.testing.assert_allclose(data, audio[53 * RATE :], atol=2**-22)
    counters = pipe.of("status")[-1]["counters"]
    assert counters["clips_truncated"] == 1 and counters["clips_lost"] == 0
    cfg.events.threshold = 1.0  # no event: the audio is let go as the results come
    pipe = Pipeline(
        cfg, [FileSource(tmp_path / "long.wav", speed=None)], load_model(small_checkpoint, compute="cpu")
    )
    pipe.run_to_end()
    assert not pipe.of("event") and pipe.integrations.clips.history[0].oldest > 20 * RATE  # by the last read


def test_forgetting_up_to_a_point_inside_an_outage_keeps_the_outage_known() -> None:
    """A pre-roll reaching back into an outage: the silence from the forgotten point on is still read."""
    history = AudioHistory(100_000, 1)
    history.write(0, np.ones((1000, 1), np.float32))
    history.write(5000, np.full((1000, 1), 2.0, np.float32))  # an outage 1000-5000
    history.forget_before(3000)
    first, got = history.read(2000, 6000)
    assert first == 3000 == history.oldest
    assert (got[:2000] == 0.0).all() and (got[2000:] == 2.0).all()
