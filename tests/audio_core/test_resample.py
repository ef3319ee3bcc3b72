"""Streaming resampling equals the offline reference; downmixing; a tone keeps its frequency."""

from __future__ import annotations

import numpy as np
import pytest

from audio_core.resample import StreamingResampler, downmix, resample_offline


def _stream(resampler: StreamingResampler, wave: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts, i = [], 0
    while i < wave.size:
        n = int(rng.integers(1, 3000))
        parts.append(resampler.process(wave[i : i + n]))
        i += n
    parts.append(resampler.process(np.zeros(0, np.float32), last=True))
    return np.concatenate(parts)


@pytest.mark.parametrize("rate", [48000, 44100, 22050, 8000])
def test_streaming_equals_offline(rate):
    wave = (np.random.default_rng(rate).standard_normal(rate * 2) * 0.1).astype(np.float32)
    resampler = StreamingResampler(rate, 16000)
    streamed = _stream(resampler, wave, seed=1)
    offline = resample_offline(wave, rate, 16000)
    assert streamed.shape == offline.shape == (32000,)
    np.testing.assert_allclose(streamed, offline, atol=1e-6)
    assert resampler.samples_in == wave.size and resampler.samples_out == streamed.size


def test_equal_rates_pass_through_untouched():
    wave = np.random.default_rng(0).standard_normal(5000).astype(np.float32)
    resampler = StreamingResampler(16000, 16000)
    np.testing.assert_array_equal(_stream(resampler, wave, seed=2), wave)


def test_a_real_clip_survives_a_round_trip_through_48k(esc50):
    wave = esc50.read_mono(esc50.clips(1)[0])
    up = resample_offline(wave, 16000, 48000)
    back = _stream(StreamingResampler(48000, 16000), up, seed=3)
    assert back.size == wave.size
    err = back - wave
    snr_db = 10 * np.log10(np.sum(wave**2) / np.sum(err**2))
    assert snr_db > 40


def test_a_tone_keeps_its_frequency():
    rate = 44100
    t = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    out = _stream(StreamingResampler(rate, 16000), tone, seed=4)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    assert np.argmax(spectrum) * 16000 / out.size == pytest.approx(440.0, abs=2.0)


def test_downmix_averages_channels():
    block = np.array([[1.0, 0.0], [0.5, -0.5], [0.2, 0.4]], dtype=np.float32)
    np.testing.assert_allclose(downmix(block), [0.5, 0.0, 0.3])
    mono = np.arange(3, dtype=np.float32)
    assert downmix(mono[:, None]).tolist() == [0.0, 1.0, 2.0]
    assert downmix(mono) is mono


def test_input_index_maps_output_time_back():
    r = StreamingResampler(48000, 16000)
    assert r.input_index(16000) == 48000 and r.input_index(1) == 3
    assert StreamingResampler(44100, 16000).input_index(16000) == 44100
    with pytest.raises(ValueError):
        StreamingResampler(0, 16000)
