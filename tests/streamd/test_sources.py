"""Audio sources: files of any format/rate/channels arrive in the ring exactly, paced or flat out; devices."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_core.audio_file import open_audio, probe_audio
from audio_core.resample import StreamingResampler, downmix
from streamd.device_source import DeviceSource
from streamd.errors import AudioInputError, ConfigError
from streamd.file_source import FileSource
from streamd.input_devices import check_distinct_devices, list_input_devices, resolve_input_device
from streamd.network_url import is_url
from streamd.ring import SampleRing


def _drain(ring: SampleRing, delay_s: float = 0.0, timeout_s: float = 20.0) -> np.ndarray:
    """Consume a ring until its producer closes it (optionally slowly); returns everything read."""
    parts = []
    deadline = time.monotonic() + timeout_s
    while not ring.exhausted():
        assert time.monotonic() < deadline, "the source never finished"
        got = ring.read()
        assert got.lost == 0
        parts.append(got.data)
        time.sleep(delay_s or 0.001)
    return np.concatenate(parts) if parts else np.zeros((0, ring.channels), np.float32)


def _replay(path: Path, consumer_delay_s: float = 0.0, **kwargs) -> tuple[FileSource, np.ndarray]:
    source = FileSource(path, **kwargs)
    source.start()
    data = _drain(source.ring, delay_s=consumer_delay_s)
    assert source.join(2.0) and source.error is None
    return source, data


@pytest.fixture(scope="module")
def stereo_44k(esc50, tmp_path_factory) -> Path:
    """A real clip as 44.1 kHz stereo float WAV (left: the clip, right: half of it)."""
    from audio_core.resample import resample_offline

    wave = resample_offline(esc50.read_mono(esc50.clips(1)[0]), 16000, 44100)
    path = tmp_path_factory.mktemp("src") / "stereo.wav"
    sf.write(path, np.stack([wave, 0.5 * wave], axis=1), 44100, subtype="FLOAT")
    return path


def test_probe_describes_a_real_clip(clips):
    info = probe_audio(clips[0])
    assert (info.sample_rate, info.channels, info.frames, info.duration_s) == (16000, 1, 80000, 5.0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.wav", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: _write(d / "text.wav", b"not audio at all"), "unsupported or unreadable audio file"),
        (lambda d: _write(d / "empty.flac", b""), "empty file (0 bytes)"),
    ],
)
def test_unusable_files_give_one_clear_line(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(AudioInputError) as err:
        probe_audio(path)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_file_without_samples_is_refused(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(AudioInputError, match="contains no audio samples"):
        probe_audio(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_an_unreadable_file(tmp_path, clips):
    path = tmp_path / "locked.flac"
    path.write_bytes(clips[0].read_bytes())
    path.chmod(0)
    with pytest.raises(AudioInputError, match="permission denied"):
        open_audio(path)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_flat_out_replay_delivers_the_file_exactly(clips):
    source, data = _replay(clips[0], speed=None, max_block_s=0.3)
    expected, _ = sf.read(clips[0], dtype="float32", always_2d=True)
    np.testing.assert_array_equal(data, expected)
    assert source.ring.overruns == 0 and source.ring.capacity == 2 * 4800  # two chunks: latency stays low


def test_any_rate_and_channel_count_is_kept_native_in_the_ring(stereo_44k, tmp_path, esc50):
    source, data = _replay(stereo_44k, speed=None)
    assert (source.sample_rate, source.channels) == (44100, 2)
    np.testing.assert_array_equal(data, sf.read(stereo_44k, dtype="float32", always_2d=True)[0])
    ogg = tmp_path / "clip.ogg"
    sf.write(ogg, esc50.read_mono(esc50.clips(1)[0]), 16000, format="OGG", subtype="VORBIS")
    _, data = _replay(ogg, speed=None)
    np.testing.assert_array_equal(data, sf.read(ogg, dtype="float32", always_2d=True)[0])


def test_a_slow_consumer_slows_a_flat_out_replay_instead_of_losing_audio(clips):
    source, data = _replay(clips[0], speed=None, max_block_s=0.25, consumer_delay_s=0.02)
    assert data.shape[0] == 80000 and source.ring.overruns == 0 and source.ring.lost_samples == 0


def test_a_paced_replay_ahead_of_its_consumer_waits_instead_of_losing_audio(clips):
    """A consumer held up (a blocking engine) while a fast paced replay fills its 0.5-s ring: the file
    waits for space, as a device cannot; every sample arrives, in order, none overwritten."""
    source = FileSource(clips[0], speed=200.0, ring_s=0.5)
    source.start()
    time.sleep(0.3)  # 5 s of audio at 200x is due in 25 ms: the ring is full long before the first read
    assert source.ring.available() == source.ring.capacity
    data = _drain(source.ring)
    assert source.join(2.0) and source.error is None
    np.testing.assert_array_equal(data, sf.read(clips[0], dtype="float32", always_2d=True)[0])
    assert source.ring.overruns == 0 and source.ring.lost_samples == 0


def test_a_file_cut_short_says_how_much_of_it_was_not_read(clips, tmp_path):
    """A FLAC whose second half is missing: the samples before the damage arrive, and the error names
    the seconds the header promised that were never read (nothing lost without being counted)."""
    wave, rate = sf.read(clips[0], dtype="float32")
    whole = tmp_path / "whole.flac"
    sf.write(whole, np.concatenate([wave, wave, wave]), rate)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    source = FileSource(cut, speed=None)
    source.start()
    data = _drain(source.ring)
    assert source.join(2.0) and source.error is not None
    missing = float(source.error.rsplit("its last ", 1)[1].split(" s were not classified")[0])
    assert missing == pytest.approx(15.0 - data.shape[0] / rate, abs=0.01) and 0 < missing < 15.0


def test_flat_out_replay_writes_only_when_the_consumer_comes_back_for_more(clips):
    source = FileSource(clips[0], speed=None, max_block_s=0.25)
    ring = source.ring
    source.start()
    try:
        for _ in range(3):
            deadline = time.monotonic() + 2.0
            while ring.available() == 0:  # an empty read asks for the next chunk
                assert ring.read().data.shape[0] == 0 and time.monotonic() < deadline
                time.sleep(0.005)
            got = ring.read()
            assert got.data.shape[0] == 4000
            time.sleep(0.1)  # busy with that chunk: the reader waits instead of filling the ring
            assert ring.available() == 0
    finally:
        source.stop()
        assert source.join(1.0)


def test_replay_is_paced_to_the_requested_speed(clips):
    started = time.monotonic()
    source, data = _replay(clips[0], speed=8.0)  # 5 s of audio at 8x: 0.625 s
    took = time.monotonic() - started
    assert data.shape[0] == 80000
    assert 0.6 <= took < 1.5
    times = [source.ring.time_of(i) for i in (15999, 79999)]  # 1 s and 5 s into the file
    assert times[1] - times[0] == pytest.approx(0.5, abs=0.08)


def test_stopping_a_replay_ends_it_at_once(clips):
    source = FileSource(clips[0], speed=1.0)
    source.start()
    time.sleep(0.2)
    source.stop()
    assert source.join(1.0)
    assert source.ring.closed and 0 < source.ring.write_index < 80000


def test_a_file_with_nan_samples_is_refused_where_it_goes_wrong(tmp_path, esc50):
    wave = esc50.read_mono(esc50.clips(1)[0])[:16000].copy()
    wave[12345] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    source = FileSource(path, speed=None, max_block_s=0.25)
    source.start()
    data = _drain(source.ring)
    assert source.join(2.0)
    assert source.error == (
        f"{path}: the audio holds NaN or infinite samples (at 0.772 s); its last 0.25 s were not classified"
    )
    assert data.shape[0] == 12000 and np.isfinite(data).all()  # the chunks before it were delivered


def test_bad_speed():
    with pytest.raises(AudioInputError, match="--speed"):
        FileSource(Path(__file__), speed=0.0)


# -- live devices (PortAudio) ----------------------------------------------------------------------------


def _input_devices():
    try:
        return list_input_devices()
    except AudioInputError:
        return []


def test_device_names_are_resolved_or_listed():
    devices = _input_devices()
    if not devices:
        with pytest.raises(AudioInputError, match="no audio input device found"):
            resolve_input_device("mic")
        return
    first = devices[0]
    assert resolve_input_device(str(first.index)) == first
    assert resolve_input_device(first.name.upper()) == first
    with pytest.raises(AudioInputError) as err:
        resolve_input_device("no-such-device-xyz")
    assert "input devices:" in str(err.value) and first.name in str(err.value)
    with pytest.raises(AudioInputError, match="no input device with index"):
        resolve_input_device("9999")
    same = [str(first.index), first.name.upper()]  # one device by index and by name
    with pytest.raises(ConfigError, match=rf"--device {first.index} and --device .* are the same input"):
        check_distinct_devices(same, is_url)
    with pytest.raises(ConfigError, match="same input"):
        check_distinct_devices(["tcp://127.0.0.1:9/a", "tcp://127.0.0.1:9/a"], is_url)
    check_distinct_devices([str(first.index), "tcp://127.0.0.1:9/a"], is_url)  # distinct: fine


def test_a_file_given_as_a_device_is_pointed_to_replay(clips):
    """With or without input devices: a recording named as --device says how to classify it instead."""
    with pytest.raises(
        AudioInputError, match=r"a file, not an input device; classify it with 'streamd replay"
    ) as err:
        resolve_input_device(str(clips[0]))
    assert "(--speed 1 for live pace)" in str(err.value)
    long_name = "a" * 300  # too long for a path (OSError): still a device name that matches none
    with pytest.raises(AudioInputError, match=r"no audio input device found|no input device matches"):
        resolve_input_device(long_name)


@pytest.mark.live
def test_capture_from_a_real_input_device_records_a_tone():
    """Needs an input device; with STREAMD_VMIC_FIFO (a PulseAudio pipe source) a 440 Hz tone is fed in."""
    if not _input_devices():
        pytest.skip("no audio input device")
    fifo = os.environ.get("STREAMD_VMIC_FIFO")
    source = DeviceSource("mic", block_s=0.02)
    stop = threading.Event()
    feeder = threading.Thread(target=_feed_tone, args=(fifo, stop), daemon=True) if fifo else None
    if feeder:
        feeder.start()
    source.start()
    time.sleep(1.5)
    started = time.monotonic()
    source.stop()
    assert time.monotonic() - started < 1.0  # abort never waits for a stalled device
    stop.set()
    if not fifo:
        return
    got = source.ring.read().data
    assert got.shape[0] > 0.5 * source.sample_rate and source.callbacks > 0
    mono = StreamingResampler(source.sample_rate, 16000).process(downmix(got), last=True)[-8000:]
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(mono.size)))
    assert np.argmax(spectrum) * 16000 / mono.size == pytest.approx(440.0, abs=4.0)


def _feed_tone(fifo: str, stop: threading.Event) -> None:
    t = np.arange(16000 * 3) / 16000
    tone = (0.3 * 32767 * np.sin(2 * np.pi * 440.0 * t)).astype("<i2")
    started = time.monotonic()
    with open(fifo, "wb", buffering=0) as f:
        for i in range(0, tone.size, 320):
            if stop.is_set():
                return
            f.write(tone[i : i + 320].tobytes())
            time.sleep(max(0.0, started + (i + 320) / 16000 - time.monotonic()))
