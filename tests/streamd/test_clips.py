"""Event clips: sample-exact against the source audio (streamed in blocks and through the daemon),
the JSON sidecar, retention, and writes that fail (disk full, unwritable) counted while the run goes on."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pipeline_helpers import Pipeline
from support.tiny_disk import tiny_tmpfs

from streamd import messages
from streamd.audio_history import AudioHistory
from streamd.clip_files import is_own_clip
from streamd.clips import ClipRecorder
from streamd.config import DaemonConfig
from streamd.config_sections import ClipsSection
from streamd.errors import ConfigError
from streamd.file_source import FileSource
from streamd.model_loading import load_model

RATE = 16000


def _audio(clips: list[Path]) -> np.ndarray:
    return np.concatenate([sf.read(str(p), dtype="float32", always_2d=True)[0] for p in clips])


def _feed(recorder: ClipRecorder, audio: np.ndarray, upto: int, start: int = 0, seed: int = 0) -> None:
    """Stream ``audio[start:upto]`` into stream 0 in random block sizes, as the feature thread does."""
    rng = np.random.default_rng(seed)
    pos = start
    while pos < upto:
        n = min(int(rng.integers(1, 4000)), upto - pos)
        recorder.tap(0, pos, audio[pos : pos + n])
        pos += n


def _event(t_start: float, t_end: float, label: str = "dog") -> dict:
    return messages.event("s", label, "end", t_start, t_end, 0.9)


def test_history_streamed_equals_the_whole_signal() -> None:
    rng = np.random.default_rng(1)
    audio = rng.standard_normal((50_000, 2)).astype(np.float32)
    history = AudioHistory(12_345, 2)
    pos = 0
    while pos < audio.shape[0]:
        n = min(int(rng.integers(1, 20_000)), audio.shape[0] - pos)
        history.write(pos, audio[pos : pos + n])
        pos += n
        first, got = history.read(0, pos)
        assert first == max(0, pos - 12_345)
        np.testing.assert_array_equal(got, audio[first:pos])


def test_clips_are_sample_exact_with_pre_and_post_roll(tmp_path: Path, clips: list[Path]) -> None:
    audio = _audio(clips)  # 15 s of real audio
    cfg = ClipsSection(dir=str(tmp_path / "clips"), pre_roll_s=1.5, post_roll_s=0.75, labels=["dog"])
    recorder = ClipRecorder(cfg, [("s", RATE, 1)])
    _feed(recorder, audio, 6 * RATE)
    msg = recorder.on_event(0, _event(3.0, 5.0))
    other = recorder.on_event(0, _event(3.0, 5.0, label="rain"))  # not a label to save
    start_msg = recorder.on_event(0, messages.event("s", "dog", "start", 9.0, 10.0, 0.9))
    assert "clip" not in other and "clip" not in start_msg
    early = recorder.on_event(0, _event(0.5, 1.0))  # pre-roll clamped at the stream start
    _feed(recorder, audio, audio.shape[0], start=6 * RATE, seed=2)
    late = recorder.on_event(0, _event(13.5, 14.8))  # post-roll cut by the end of the stream
    recorder.close()
    assert recorder.counters["clips_saved"] == 3 and recorder.write_errors == 0
    for event, (a, b) in ((msg, (1.5, 5.75)), (early, (0.0, 1.75)), (late, (12.0, 15.0))):
        path = Path(event["clip"])
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        assert rate == RATE
        expected = audio[round(a * RATE) : round(b * RATE)]
        assert data.shape == expected.shape
        np.testing.assert_array_equal(data, expected)  # 16-bit source audio survives 24-bit FLAC exactly
        side = json.loads(path.with_suffix(".json").read_text())
        assert side["event"] == event and side["first_sample"] == round(a * RATE)
        assert side["sample_rate"] == RATE and side["stream"] == "s"
        messages.encode(event)  # still a valid message with its clip path
    assert not list((tmp_path / "clips").glob(".*"))  # no temporary left behind


def test_retention_keeps_the_newest_files(tmp_path: Path, clips: list[Path]) -> None:
    audio = _audio(clips)
    cfg = ClipsSection(dir=str(tmp_path / "c"), pre_roll_s=0, post_roll_s=0, max_files=2)
    recorder = ClipRecorder(cfg, [("s", RATE, 1)])
    _feed(recorder, audio, audio.shape[0])
    paths = [Path(recorder.on_event(0, _event(t, t + 1.0))["clip"]) for t in (1.0, 4.0, 7.0, 10.0)]
    recorder.close()
    assert recorder.saved == 4
    assert sorted((tmp_path / "c").glob("*.flac")) == sorted(paths[2:])
    assert len(list((tmp_path / "c").glob("*.json"))) == 2
    sizes = {p: p.stat().st_size for p in paths[2:]}
    limit = max(sizes.values()) + 1  # room for one clip of these sizes, not two
    cfg2 = ClipsSection(dir=str(tmp_path / "c"), pre_roll_s=0, post_roll_s=0, max_bytes=limit)
    recorder = ClipRecorder(cfg2, [("s", RATE, 1)])
    _feed(recorder, audio, audio.shape[0])
    newest = Path(recorder.on_event(0, _event(10.0, 11.0))["clip"])  # the audio of paths[3] again
    recorder.close()
    assert newest not in paths  # a name of its own
    left = sorted((tmp_path / "c").glob("*.flac"))
    assert sum(p.stat().st_size for p in left) <= limit
    assert newest in left and paths[2] not in left  # the oldest went first


def test_retention_never_touches_files_streamd_did_not_write(tmp_path: Path, clips: list[Path]) -> None:
    """A user's own recordings in the clip folder (however old, even named like a clip but without its
    sidecar) are neither counted nor deleted by retention."""
    folder = tmp_path / "c"
    folder.mkdir()
    foreign = [folder / "my_recording.flac", folder / "s_20200101T000000_dog_1.00s.flac"]
    for path in foreign:
        sf.write(path, np.zeros((RATE, 1), np.float32), RATE, format="FLAC")
        os.utime(path, (0, 0))  # older than anything streamd writes
    audio = _audio(clips)
    recorder = ClipRecorder(
        ClipsSection(dir=str(folder), pre_roll_s=0, post_roll_s=0, max_files=1), [("s", RATE, 1)]
    )
    _feed(recorder, audio, audio.shape[0])
    paths = [Path(recorder.on_event(0, _event(t, t + 1.0))["clip"]) for t in (1.0, 4.0)]
    recorder.close()
    assert is_own_clip(paths[1]) and not any(is_own_clip(p) for p in foreign)
    assert sorted(folder.glob("*.flac")) == sorted([*foreign, paths[1]])


def test_a_folder_that_cannot_be_written_is_refused_at_start_up(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for target, why in ((tmp_path / "file", "not a folder"), (tmp_path / "file" / "clips", "cannot create")):
        with pytest.raises(ConfigError, match=f"--save-clips .*{why}"):
            ClipRecorder(ClipsSection(dir=str(target)), [("s", RATE, 1)])


@pytest.mark.parametrize("where", ["disk_full", "replaced_by_a_file"])
def test_failed_writes_are_counted_and_the_run_goes_on(
    tmp_path: Path, clips: list[Path], small_checkpoint: Path, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    with contextlib.ExitStack() as stack:
        if where == "disk_full":
            target = stack.enter_context(tiny_tmpfs(tmp_path / "full"))
        else:
            target = tmp_path / "clips"
        cfg = ClipsSection(dir=str(target), pre_roll_s=0, post_roll_s=0)
        recorder = ClipRecorder(cfg, [("s", RATE, 1)])
        if where == "replaced_by_a_file":  # the folder goes away while the daemon runs: unwritable
            target.rmdir()
            target.write_text("x")
        audio = _audio(clips)
        _feed(recorder, audio, audio.shape[0])
        events = [recorder.on_event(0, _event(t, t + 3.0)) for t in (1.0, 4.0, 7.0, 10.0, 11.5)]
        recorder.close()
        assert recorder.saved + recorder.write_errors == len(events)
        assert recorder.write_errors >= (2 if where == "disk_full" else len(events))
        assert sum("cannot save clip" in r.message for r in caplog.records) == 1  # logged once
        if where == "disk_full":
            assert "No space left on device" in caplog.text  # the reason, not a codec's "System error."
            left = sorted(target.iterdir())
            assert not [p for p in left if p.name.startswith(".")]  # failed temporaries are removed
            flacs = [p for p in left if p.suffix == ".flac"]
            assert len(flacs) == recorder.saved and all(is_own_clip(p) for p in flacs)  # none orphaned
            for event in events:  # what is there is complete
                if Path(event["clip"]).exists():
                    assert sf.info(event["clip"]).frames == 3 * RATE


def test_daemon_replay_saves_the_event_clip(
    tmp_path: Path, clips: list[Path], small_checkpoint: Path
) -> None:
    cfg = DaemonConfig()
    cfg.events.allow = ["dog"]
    cfg.events.threshold = 0.0
    cfg.events.min_hits = 1
    cfg.clips.dir = str(tmp_path / "clips")
    source = FileSource(clips[1], speed=None)
    pipe = Pipeline(cfg, [source], load_model(small_checkpoint, compute="cpu"))
    pipe.run_to_end()
    ends = [e for e in pipe.of("event") if e["state"] == "end"]
    assert len(ends) == 1 and ends[0]["clip"]
    data, rate = sf.read(ends[0]["clip"], dtype="float32", always_2d=True)
    audio = sf.read(str(clips[1]), dtype="float32", always_2d=True)[0]
    first = max(0, round((ends[0]["t_start"] - 2.0) * rate))
    last = min(audio.shape[0], round((ends[0]["t_end"] + 2.0) * rate))
    np.testing.assert_array_equal(data, audio[first:last])
    assert pipe.integrations.counters["clips_saved"] == 1
    assert pipe.of("status")[-1]["counters"]["clips_saved"] == 1  # written before the final status


class _SourceWithAnOutage(FileSource):
    """A file replayed whole, with one outage reported at ring index ``at``: ``lost`` samples never came."""

    def __init__(self, path: Path, at: int, lost: int) -> None:
        super().__init__(path, speed=None)
        self._gaps = [(at, lost)]

    def take_gaps(self) -> list[tuple[int, int]]:
        gaps, self._gaps = self._gaps, []
        return gaps


def test_after_an_outage_clips_hold_the_audio_of_their_stream_time_and_no_event_spans_it(
    tmp_path: Path, clips: list[Path], small_checkpoint: Path
) -> None:
    audio = _audio(clips)  # 15 s of real audio, 16 kHz
    whole = tmp_path / "whole.wav"
    sf.write(whole, audio, RATE, subtype="FLOAT")
    at, lost = 6 * RATE, 3 * RATE
    timeline = np.concatenate([audio[:at], np.zeros((lost, 1), np.float32), audio[at:]])  # stream time
    cfg = DaemonConfig()
    loaded = load_model(small_checkpoint, compute="cpu", precision="fp32")
    cfg.events.allow = [loaded.info.labels[0]]
    cfg.events.threshold = 0.0  # every window is a hit: one event per stretch of audio
    cfg.events.min_hits = 1
    cfg.clips.dir = str(tmp_path / "clips")
    pipe = Pipeline(cfg, [_SourceWithAnOutage(whole, at, lost)], loaded)
    pipe.run_to_end()
    ends = [e for e in pipe.of("event") if e["state"] == "end"]
    assert [(e["t_start"], e["t_end"]) for e in ends] == [(0.0, 6.0), (9.0, 18.0)]
    for event in ends:
        data, rate = sf.read(event["clip"], dtype="float32", always_2d=True)
        first = max(0, round((event["t_start"] - 2.0) * rate))
        last = min(timeline.shape[0], round((event["t_end"] + 2.0) * rate))
        np.testing.assert_allclose(data, timeline[first:last], atol=2**-22)  # 24-bit FLAC
        sidecar = json.loads(Path(event["clip"]).with_suffix(".json").read_text())
        assert sidecar["clip_start_s"] == pytest.approx(first / rate)
    assert pipe.of("status")[-1]["counters"]["clips_saved"] == 2


def test_a_long_outage_costs_the_history_no_more_than_it_holds() -> None:
    history = AudioHistory(1000, 1)
    history.write(0, np.ones((500, 1), np.float32))
    history.write(10**12, np.full((10, 1), 2.0, np.float32))  # a 2-year outage at 16 kHz: no huge array
    first, got = history.read(10**12 - 5, 10**12 + 10)
    assert first == 10**12 - 5 and got[:5].sum() == 0 and (got[5:] == 2.0).all()
    first, got = history.read(490, 510)  # the audio before the outage is still held
    assert first == 490 and (got[:10] == 1.0).all() and (got[10:] == 0.0).all() and got.shape[0] == 20


def test_history_across_outages_equals_the_stream_timeline() -> None:
    """Random blocks and outages: what is read equals the stream's timeline (silence for lost time), and
    starts no later than the oldest real sample the ring still holds."""
    rng = np.random.default_rng(3)
    history = AudioHistory(5000, 2)
    timeline: list[np.ndarray] = []
    real_at: list[int] = []  # stream index of every real sample, in order
    end = 0
    for _ in range(300):
        if rng.random() < 0.1:  # an outage
            lost = int(rng.integers(1, 20_000))
            timeline.append(np.zeros((lost, 2), np.float32))
            end += lost
        n = int(rng.integers(1, 900))
        block = rng.standard_normal((n, 2)).astype(np.float32)
        history.write(end, block)
        timeline.append(block)
        real_at.extend(range(end, end + n))
        end += n
        whole = np.concatenate(timeline)
        oldest_held = real_at[max(0, len(real_at) - 5000)]
        start = int(rng.integers(0, end))
        stop = int(rng.integers(start, end + 10))
        first, got = history.read(start, stop)
        assert start <= first <= max(start, oldest_held)
        np.testing.assert_array_equal(got, whole[first : min(stop, end)])


def test_an_event_cut_off_by_a_long_outage_keeps_its_clip(tmp_path: Path, clips: list[Path]) -> None:
    """The audio before an outage longer than the clip history stays held until the event's clip is cut."""
    audio = _audio(clips)
    cfg = ClipsSection(dir=str(tmp_path / "clips"), max_clip_s=10.0, labels=["dog"])
    recorder = ClipRecorder(cfg, [("s", RATE, 1)])
    _feed(recorder, audio, 6 * RATE)
    after = 6 * RATE + 90 * RATE  # 90 s lost, against 14 s held
    recorder.tap(0, after, audio[6 * RATE : 8 * RATE])
    msg = recorder.on_event(0, _event(1.0, 6.0))  # ended by the outage: flushed after the audio resumed
    recorder.tap(0, after + 2 * RATE, audio[8 * RATE : 10 * RATE])
    recorder.close()
    assert recorder.counters["clips_saved"] == 1 and recorder.counters["clips_truncated"] == 0
    data, _ = sf.read(msg["clip"], dtype="float32", always_2d=True)
    expected = np.concatenate([audio[0 : 6 * RATE], np.zeros((2 * RATE, 1), np.float32)])  # pre 1 s, post 2 s
    np.testing.assert_allclose(data, expected, atol=2**-22)
