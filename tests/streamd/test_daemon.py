"""The whole pipeline on real ESC-50 audio: streamed results equal the offline model on the same windows."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from zmq_helpers import Collector, validate

from audio_core.fbank import compute_fbank
from audio_core.resample import resample_offline
from models import FeatureConfig, ModelInfo, build_model
from models.checkpoint import save_checkpoint
from streamd.collect import replay_collect
from streamd.config import DaemonConfig, with_windows
from streamd.daemon import Daemon
from streamd.errors import ConfigError, StreamdError
from streamd.events import EventConfig, find_events
from streamd.file_source import FileSource
from streamd.model_loading import LoadedModel, load_model
from streamd.publisher import Publisher
from streamd.streams import unique_stream_names

RATE = 16000


@pytest.fixture(scope="module")
def loaded(small_checkpoint) -> LoadedModel:
    return load_model(small_checkpoint, compute="cpu", precision="fp32")


@pytest.fixture(scope="module")
def long_wave(esc50) -> np.ndarray:
    """Three real clips back to back, cut to 13.5 s (so the end needs a tail window)."""
    return np.concatenate([esc50.read_mono(p) for p in esc50.clips(3)])[: int(13.5 * RATE)]


@pytest.fixture(scope="module")
def long_file(long_wave, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "scene.wav"
    sf.write(path, long_wave, RATE, subtype="FLOAT")
    return path


def _offline_scores(
    loaded: LoadedModel, wave: np.ndarray, t_start: float, window_s: float, lead_s: float = 0.0
) -> torch.Tensor:
    """The model on the window at ``t_start`` alone (``lead_s``: led in by that much silence)."""
    start, lead = round(t_start * RATE), round(lead_s * RATE)
    audio = np.concatenate([np.zeros(lead, np.float32), wave[start : start + round(window_s * RATE) - lead]])
    fbank = compute_fbank(audio, loaded.info.features)
    with torch.inference_mode():
        logits = loaded.model(loaded.info.normalization.apply(fbank[None]))
    return torch.softmax(logits, -1)[0]


def _by_type(msgs: list[dict], kind: str, stream: str | None = None) -> list[dict]:
    return [m for m in msgs if m["type"] == kind and (stream is None or m["stream"] == stream)]


def _scores(msg: dict, labels: list[str]) -> torch.Tensor:
    table = {item["label"]: item["score"] for item in msg["labels"]}
    return torch.tensor([table[name] for name in labels])


def test_replay_equals_the_offline_model_window_by_window(loaded, long_file, long_wave):
    msgs = replay_collect([long_file], loaded, 5.0, 1.0, top_k=50)
    for msg in msgs:
        validate(msg)
    preds = _by_type(msgs, "prediction")
    assert [p["window_index"] for p in preds] == list(range(10))
    assert [p["t_start"] for p in preds] == [float(k) for k in range(9)] + [8.5]  # 8.5: the end-aligned tail
    labels = loaded.info.labels
    for p in preds:
        assert p["t_end"] - p["t_start"] == pytest.approx(5.0) and p["model"] == "small"
        assert p["stream"] == "scene" and p["latency_ms"] >= 0 and p["level_dbfs"] > -120
        offline = _offline_scores(loaded, long_wave, p["t_start"], 5.0)
        torch.testing.assert_close(_scores(p, labels), offline, atol=1e-5, rtol=1e-4)
    status = _by_type(msgs, "status")
    assert status[0]["state"] == "starting" and status[-1]["state"] == "finished"
    final = status[-1]["counters"]
    assert final["windows"] == 10 and final["dropped_windows"] == 0 and final["model_errors"] == 0
    assert final["samples"] == long_wave.size and final["overruns"] == 0 and final["rtf"] > 0
    assert status[-1]["t_end"] == pytest.approx(13.5)


def test_any_rate_and_channel_count_goes_through_the_same_path(loaded, long_file, long_wave, tmp_path):
    up = resample_offline(long_wave, RATE, 44100)
    stereo = np.stack([up, 0.5 * up], axis=1)
    wav = tmp_path / "stereo44k.wav"
    sf.write(wav, stereo, 44100, subtype="FLOAT")
    ogg = tmp_path / "mono.ogg"
    sf.write(ogg, long_wave, RATE, format="OGG", subtype="VORBIS")
    reference = _by_type(replay_collect([long_file], loaded, 5.0, 1.0, top_k=50), "prediction")
    for path in (wav, ogg):
        preds = _by_type(replay_collect([path], loaded, 5.0, 1.0, top_k=50), "prediction")
        assert [p["t_start"] for p in preds] == [p["t_start"] for p in reference]
        for got, ref in zip(preds, reference, strict=True):
            torch.testing.assert_close(
                _scores(got, loaded.info.labels), _scores(ref, loaded.info.labels), atol=2e-3, rtol=0
            )
    stereo_levels = [p["level_dbfs"] for p in _by_type(replay_collect([wav], loaded, 5.0, 1.0), "prediction")]
    expected = [p["level_dbfs"] + 20 * np.log10(0.75) for p in reference]  # the downmix is 0.75 x the signal
    np.testing.assert_allclose(stereo_levels, expected, atol=0.05)


def test_a_file_shorter_than_a_window_gives_one_padded_result(loaded, long_wave, tmp_path):
    path = tmp_path / "short.flac"
    sf.write(path, long_wave[: int(1.7 * RATE)], RATE)
    msgs = replay_collect([path], loaded, 5.0, 1.0, top_k=50)
    (pred,) = _by_type(msgs, "prediction")
    assert (pred["t_start"], pred["t_end"]) == (0.0, 5.0)
    padded = np.concatenate([long_wave[: int(1.7 * RATE)], np.zeros(int(3.3 * RATE), np.float32)])
    torch.testing.assert_close(
        _scores(pred, loaded.info.labels), _offline_scores(loaded, padded, 0.0, 5.0), atol=1e-5, rtol=1e-4
    )
    notes = [m.get("message", "") for m in _by_type(msgs, "status")]
    assert any("padded with 3.3 s of silence" in n for n in notes)


def test_the_daemon_gives_back_torch_threads_it_changed(loaded, long_wave, tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, long_wave[: int(2.0 * RATE)], RATE)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        config = with_windows(DaemonConfig(), 5.0, 1.0)
        config.engine.threads = 1
        replay_collect([path], loaded, config=config)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_several_files_are_separate_streams_batched_in_one_engine(loaded, esc50):
    paths = esc50.clips(3)
    together = replay_collect(paths, loaded, 2.0, 1.0, top_k=50)
    names = unique_stream_names([p.stem for p in paths])
    assert {m["stream"] for m in together} == set(names)
    for path, name in zip(paths, names, strict=True):
        alone = _by_type(replay_collect([path], loaded, 2.0, 1.0, top_k=50), "prediction")
        mixed = _by_type(together, "prediction", name)
        assert [p["t_start"] for p in mixed] == [p["t_start"] for p in alone] == [0.0, 1.0, 2.0, 3.0]
        for a, b in zip(mixed, alone, strict=True):
            torch.testing.assert_close(_scores(a, loaded.info.labels), _scores(b, loaded.info.labels))
    last = {m["stream"]: m for m in _by_type(together, "status")}  # each stream's final status
    finals = sorted(last.values(), key=together.index)
    assert [m["state"] for m in finals] == ["finished"] * 3
    assert finals[-1]["counters"]["batches"] < 12  # 12 windows in fewer model calls
    first_final = together.index(finals[0])  # everything before it was sent when it was counted
    assert finals[0]["counters"]["published"] == first_final


def test_a_recurrent_model_gets_one_result_per_column(tiny_recurrent, long_wave, tmp_path):
    path = tmp_path / "clip.wav"
    wave = long_wave[: int(1.234 * RATE)]
    sf.write(path, wave, RATE, subtype="FLOAT")
    preds = _by_type(replay_collect([path], tiny_recurrent, top_k=50), "prediction")
    cf = tiny_recurrent.column_frames
    cfg = tiny_recurrent.info.features
    frames = cfg.num_frames(wave.size)
    columns = frames // cf  # whole columns: the tail after the last one is not classified
    assert frames % cf and [p["window_index"] for p in preds] == list(range(columns))
    fbank = compute_fbank(wave, cfg)[: columns * cf]
    with torch.inference_mode():
        steps = tiny_recurrent.model.forward_steps(tiny_recurrent.info.normalization.apply(fbank[None]))[0]
    reference = torch.softmax(steps, -1)
    got = torch.stack([_scores(p, tiny_recurrent.info.labels) for p in preds])
    torch.testing.assert_close(got, reference, atol=1e-6, rtol=1e-5)
    assert preds[1]["t_start"] == pytest.approx(cf * 0.01)
    short = tmp_path / "short.wav"  # shorter than one column: completed with silence, and said so
    sf.write(short, wave[: (cf - 1) * 160], RATE, subtype="FLOAT")  # a column spans (cf - 1) * 160 + 400
    msgs = replay_collect([short], tiny_recurrent, top_k=50)
    assert len(_by_type(msgs, "prediction")) == 1
    notes = [m.get("message", "") for m in _by_type(msgs, "status")]
    note = "audio shorter than one step (0.03 s): padded with 0.025 s of silence"
    assert note in notes, notes


def test_the_streaming_mamba_checkpoint_replays_column_by_column(esc50, long_wave, tmp_path):
    config = {"num_classes": 50, "num_mel_bins": 64, "d_model": 16, "n_layers": 2}
    torch.manual_seed(2)
    model = build_model("streaming_mamba", config).eval()
    info = ModelInfo("streaming_mamba", config, esc50.labels, FeatureConfig(num_mel_bins=64))
    checkpoint = save_checkpoint(tmp_path / "mamba.safetensors", model, info)
    wave = long_wave[: 2 * RATE]
    path = tmp_path / "two_seconds.wav"
    sf.write(path, wave, RATE, subtype="FLOAT")
    msgs = replay_collect([path], checkpoint, top_k=50)
    preds = _by_type(msgs, "prediction")
    columns = info.features.num_frames(wave.size) // 16
    assert [p["window_index"] for p in preds] == list(range(columns))
    fbank = compute_fbank(wave, info.features)[: columns * 16]
    with torch.inference_mode():
        reference = torch.softmax(model.forward_steps(info.normalization.apply(fbank[None]))[0], -1)
    got = torch.stack([_scores(p, esc50.labels) for p in preds])
    torch.testing.assert_close(got, reference, atol=1e-5, rtol=1e-4)
    assert "recurrent, 16 frames per step" in _by_type(msgs, "status")[0]["message"]


def _score_table(pred: dict) -> dict[str, float]:
    return {item["label"]: item["score"] for item in pred["labels"]}


def test_events_follow_the_published_scores(loaded, long_file, esc50):
    first = _score_table(_by_type(replay_collect([long_file], loaded, 5.0, 1.0, top_k=50), "prediction")[0])
    watched = sorted(esc50.labels, key=lambda name: -first[name])[:3]  # the labels scoring highest at first
    cfg = EventConfig(threshold=first[watched[-1]] - 1e-4, min_hits=2, hold_s=1.0, allow=watched)
    msgs = replay_collect([long_file], loaded, 5.0, 1.0, top_k=50, events=cfg)
    windows = [(p["t_start"], p["t_end"], _score_table(p)) for p in _by_type(msgs, "prediction")]
    published = _by_type(msgs, "event")
    reference = find_events(cfg, "scene", windows)
    assert published and len(published) == len(reference)
    for got, want in zip(published, reference, strict=True):
        # the reference was never sent, so it has no seq
        assert {**got, "wall_time": 0, "seq": 0} == {**want, "wall_time": 0, "seq": 0}


def test_a_stop_makes_no_tail_window_to_count_as_dropped(loaded, long_file, long_wave):
    """A stopped replay sometimes reported a dropped window: the stop ended the file's ring, the feature
    stage flushed an end-aligned tail window for it, and the stopped engine dropped it. A stream ended by a
    stop gets no tail (or padded) window; one that ends on its own still does."""
    for stopped in (True, False):
        daemon = Daemon(DaemonConfig(), [FileSource(long_file)], loaded, Publisher("inproc://tail-at-stop"))
        stream = daemon.streams[0]
        ring = stream.source.ring
        ring.write(
            long_wave[: int(9.04 * RATE)].reshape(-1, 1)
        )  # windows 0-5 ... 4-9 whole, 4.04-9.04 a tail
        ring.close()
        if stopped:
            daemon._stop.set()
        daemon.features.pump(stream)
        assert stream.submitted_windows == (5 if stopped else 6) and stream.finished


def test_every_dropped_window_is_counted(loaded, long_file):
    cfg = with_windows(DaemonConfig(), 1.0, 0.1)
    cfg.engine.overload = "drop_oldest"
    cfg.engine.queue_size = 1
    cfg.engine.max_batch = 1
    cfg.capture.max_block_s = 2.0  # each chunk completes 20 windows at once
    msgs = replay_collect([long_file], loaded, 1.0, 0.1, config=cfg, top_k=2)
    assert cfg.publish.top_k == 5  # the caller's config is left alone
    final = _by_type(msgs, "status")[-1]["counters"]
    produced = 126  # windows at 0.0, 0.1, ..., 12.5 s over 13.5 s
    assert final["dropped_windows"] > 0
    assert final["windows"] + final["dropped_windows"] == produced
    assert len(_by_type(msgs, "prediction")) == final["windows"]


def test_published_over_real_zmq_and_valid_against_the_schema(loaded, long_file, free_port):
    endpoint = f"tcp://127.0.0.1:{free_port}"
    cfg = DaemonConfig()
    cfg.publish.wait_for_subscriber_s = 5.0
    collector = Collector(endpoint, seconds=30.0).start()
    daemon = Daemon(cfg, [FileSource(long_file, speed=None)], loaded, Publisher(endpoint))
    daemon.run_until_done()
    time.sleep(0.2)
    msgs = collector.stop()  # validated against the schema
    assert len(_by_type(msgs, "prediction")) == 10
    assert _by_type(msgs, "status")[-1]["state"] == "finished"
    assert daemon.errors == []


def test_a_port_in_use_fails_before_any_audio_is_read(loaded, long_file, free_port):
    endpoint = f"tcp://127.0.0.1:{free_port}"
    holder = Publisher(endpoint)
    holder.start()
    try:
        source = FileSource(long_file, speed=None)
        with pytest.raises(StreamdError, match="address already in use"):
            Daemon(DaemonConfig(), [source], loaded, Publisher(endpoint)).run_until_done()
        assert source.ring.write_index == 0
    finally:
        holder.stop()


def test_a_live_style_run_stops_within_two_seconds_with_a_final_status(loaded, long_file):
    cfg = with_windows(DaemonConfig(), 1.0, 0.5)
    cfg.publish.status_interval_s = 0.5
    publisher = Publisher("inproc://daemon-stop-test")
    got: list[dict] = []
    publisher.add_sink(got.append)
    daemon = Daemon(cfg, [FileSource(long_file, speed=1.0)], loaded, publisher)
    stop = threading.Event()
    thread = threading.Thread(target=daemon.run_forever, args=(stop,))
    thread.start()
    time.sleep(2.2)
    stop.set()
    asked = time.monotonic()
    thread.join(5.0)
    assert not thread.is_alive() and time.monotonic() - asked < 2.0
    preds = _by_type(got, "prediction")
    ends = [p["t_end"] for p in preds]
    assert 2 <= len(ends) <= 3 and ends == [1.0, 1.5, 2.0][: len(ends)]  # paced: 2.2 s of audio at most
    assert max(p["latency_ms"] for p in preds) < 250  # paced like a microphone: results follow the audio
    status = _by_type(got, "status")
    assert status[-1]["state"] == "stopped"
    assert [m["state"] for m in status[1:-1]].count("running") >= 3  # every 0.5 s
    for before, after in itertools.pairwise(status):
        assert after["t_start"] == before["t_end"] <= after["t_end"]  # consecutive spans of stream time
    assert status[-1]["counters"]["rtf"] == pytest.approx(1.0, abs=0.25)


def test_a_stream_whose_file_ended_reports_finished_while_the_others_go_on(loaded, long_wave, tmp_path):
    """Two paced files, 2 s and 5 s: once the short one's results are out its periodic status says
    finished (never running again); each stream's last status is the final one, counting everything."""
    short, longer = tmp_path / "short.wav", tmp_path / "longer.wav"
    sf.write(short, long_wave[: 2 * RATE], RATE, subtype="FLOAT")
    sf.write(longer, long_wave[: 5 * RATE], RATE, subtype="FLOAT")
    cfg = with_windows(DaemonConfig(), 1.0, 0.5)
    cfg.publish.status_interval_s = 0.5
    publisher = Publisher("inproc://daemon-finished-test")
    got: list[dict] = []
    publisher.add_sink(got.append)
    Daemon(
        cfg, [FileSource(short, speed=1.0), FileSource(longer, speed=1.0)], loaded, publisher
    ).run_until_done()
    states = [m["state"] for m in _by_type(got, "status", "short")]
    first = states.index("finished")
    assert first < len(states) - 1 and set(states[first:]) == {"finished"}  # before the run's end, for good
    finished_at = got.index(_by_type(got, "status", "short")[first])
    assert [p for p in _by_type(got, "prediction", "longer") if got.index(p) > finished_at]  # others went on
    assert _by_type(got, "status", "longer")[-1]["state"] == "finished"
    assert _by_type(got, "status", "short")[-1]["counters"]["windows"] == 3  # 1-s windows every 0.5 s


@pytest.mark.parametrize("speed", [1.0, None])
def test_a_stream_that_ended_ends_its_events_before_it_says_finished(loaded, long_wave, tmp_path, speed):
    """A short file beside a longer one: its open events ended only when every stream had ended, after
    its periodic "finished" (which an MQTT bridge takes for the stream's last word). They now end with its
    audio, and "finished" waits for them."""
    short, longer = tmp_path / "short.wav", tmp_path / "longer.wav"
    sf.write(short, long_wave[: 2 * RATE], RATE, subtype="FLOAT")
    sf.write(longer, long_wave[: 6 * RATE], RATE, subtype="FLOAT")
    cfg = with_windows(DaemonConfig(), 1.0, 0.5)
    cfg.publish.status_interval_s = 0.1
    cfg.events = EventConfig(threshold=0.001, min_hits=1)  # every label scored opens an event
    publisher = Publisher(f"inproc://daemon-events-finished-{speed}")
    got: list[dict] = []
    publisher.add_sink(got.append)
    sources = [FileSource(short, speed=speed), FileSource(longer, speed=speed)]
    Daemon(cfg, sources, loaded, publisher).run_until_done()
    mine = [m for m in got if m["stream"] == "short"]
    ends = [i for i, m in enumerate(mine) if m["type"] == "event" and m["state"] == "end"]
    starts = [m for m in mine if m["type"] == "event" and m["state"] == "start"]
    first = next(i for i, m in enumerate(mine) if m["type"] == "status" and m["state"] == "finished")
    assert starts and len(ends) == len(starts) and max(ends) < first  # all ended before "finished"
    assert all(mine[i]["t_end"] <= 2.0 + 1e-6 for i in ends)  # at the end of its audio
    later = [m for m in got[got.index(mine[first]) :] if m["stream"] == "longer"]
    assert speed is None or later  # paced: the other stream went on after it


def test_settings_the_model_cannot_use_are_config_errors(loaded, long_file):
    cfg = DaemonConfig()
    cfg.windows.hop_s = 0.015
    with pytest.raises(ConfigError, match="multiple of the frame shift"):
        Daemon(cfg, [FileSource(long_file)], loaded, Publisher("inproc://unused"))
    with pytest.raises(ConfigError, match="no audio sources"):
        Daemon(DaemonConfig(), [], loaded, Publisher("inproc://unused"))


def test_stream_names_are_valid_and_distinct():
    assert unique_stream_names(["a b", "a b", "a_b", "???"]) == ["a_b", "a_b-2", "a_b-3", "stream"]


def test_paced_streams_are_staggered_over_the_hop_each_window_equal_to_offline(loaded, long_file, long_wave):
    msgs = replay_collect([long_file, long_file], loaded, 5.0, 1.0, top_k=50, speed=20.0)
    first, second = (_by_type(msgs, "prediction", name) for name in ("scene", "scene-2"))
    assert [p["t_start"] for p in first] == [float(k) for k in range(9)] + [8.5]
    # the second starts half a hop earlier: its first window is led in by 0.5 s of silence; 8.5 is regular
    assert [p["t_start"] for p in second] == [0.0] + [k + 0.5 for k in range(9)]
    assert second[0]["t_end"] == 4.5 and first[0]["t_end"] == 5.0
    for p in first + second:
        lead = 5.0 - (p["t_end"] - p["t_start"])
        offline = _offline_scores(loaded, long_wave, p["t_start"], 5.0, lead_s=lead)
        torch.testing.assert_close(_scores(p, loaded.info.labels), offline, atol=1e-5, rtol=1e-4)
    starting = [m["message"] for m in _by_type(msgs, "status") if m["state"] == "starting"]
    assert "staggered" not in starting[0] and "0.5 s ahead of the hop grid" in starting[1]
    # two streams of one file: "scene" and "scene-2", each starting message names the file it reads
    assert all(text.startswith(f"{long_file}: ") for text in starting)


def test_a_short_file_among_paced_streams_is_scored_as_classify_scores_it(
    loaded, long_file, long_wave, tmp_path
):
    """A file shorter than a window, replayed second of several at a set speed, was led in by the stagger's
    silence: its one window (reported 0-4.5 s, "padded with 4.2 s") got another label than classify's. It is
    now the window classify scores: its audio from 0, silence after it."""
    short = tmp_path / "short.wav"
    sf.write(short, long_wave[RATE : RATE + int(0.3 * RATE)], RATE, subtype="FLOAT")
    msgs = replay_collect([long_file, short], loaded, 5.0, 1.0, top_k=50, speed=20.0)
    (only,) = _by_type(msgs, "prediction", "short")
    assert (only["t_start"], only["t_end"]) == (0.0, 5.0)
    padded = np.concatenate([long_wave[RATE : RATE + int(0.3 * RATE)], np.zeros(int(4.7 * RATE), np.float32)])
    offline = _offline_scores(loaded, padded, 0.0, 5.0)
    torch.testing.assert_close(_scores(only, loaded.info.labels), offline, atol=1e-5, rtol=1e-4)
    said = [
        m["message"]
        for m in _by_type(msgs, "status", "short")
        if "shorter than one window" in m.get("message", "")
    ]
    assert said and "padded with 4.7 s of silence" in said[0]


def test_no_stagger_at_full_speed_or_when_turned_off(loaded, long_file):
    grid = [float(k) for k in range(9)] + [8.5]
    flat_out = replay_collect([long_file, long_file], loaded, 5.0, 1.0)
    off = DaemonConfig()
    off.windows.stagger = False
    paced_off = replay_collect([long_file, long_file], loaded, 5.0, 1.0, speed=20.0, config=off)
    for msgs in (flat_out, paced_off):
        for name in ("scene", "scene-2"):
            assert [p["t_start"] for p in _by_type(msgs, "prediction", name)] == grid


def test_replayed_files_queue_a_full_batch(loaded, long_file):
    for speed in (None, 1.0):
        daemon = Daemon(DaemonConfig(), [FileSource(long_file, speed=speed)], loaded, Publisher("inproc://q"))
        assert daemon.policy == "block" and daemon.engine.queue.maxsize == DaemonConfig().engine.max_batch


def test_a_stopped_replay_says_finished_for_a_stream_that_had_ended(loaded, long_wave, long_file, tmp_path):
    short = tmp_path / "short.wav"
    sf.write(short, long_wave[: int(1.5 * RATE)], RATE, subtype="FLOAT")
    publisher = Publisher("inproc://daemon-partly-finished")
    got: list[dict] = []
    publisher.add_sink(got.append)
    sources = [FileSource(short, speed=1.0), FileSource(long_file, speed=1.0)]
    daemon = Daemon(with_windows(DaemonConfig(), 1.0, 0.5), sources, loaded, publisher)
    stop = threading.Event()
    thread = threading.Thread(target=daemon.run_until_done, args=(stop,))
    thread.start()
    time.sleep(3.0)
    stop.set()
    thread.join(10.0)
    assert not thread.is_alive()
    names = unique_stream_names([short.stem, long_file.stem])
    short_final = _by_type(got, "status", names[0])[-1]
    long_final = _by_type(got, "status", names[1])[-1]
    assert short_final["state"] == "finished"  # all of it classified before the stop
    assert short_final["counters"]["windows"] == len(_by_type(got, "prediction", names[0])) == 2
    assert long_final["state"] == "stopped"  # cut short: 13.5 s of audio, 3 s of it played
