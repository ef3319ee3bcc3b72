"""``audio_core.digital_silence.SignalWatch``: a signal is a sample that differs from the first one, found
in whichever chunk it comes."""

from __future__ import annotations

import numpy as np

from audio_core.digital_silence import SignalWatch
from audio_core.fbank import FeatureConfig, compute_fbank


def watch(*chunks: np.ndarray) -> bool:
    signal = SignalWatch()
    for chunk in chunks:
        signal.add(chunk.astype(np.float32))
    return signal.heard


def test_zeros_and_a_constant_offset_are_silence_in_any_chunking() -> None:
    assert not watch(np.zeros(0), np.zeros(100), np.zeros(7))
    assert not watch(np.full(100, 0.25), np.zeros(0), np.full(3, 0.25))
    assert not watch()


def test_one_sample_that_differs_is_a_signal_in_the_first_or_a_later_chunk() -> None:
    assert watch(np.array([0.25, 0.25, 0.2500001]))
    assert watch(np.zeros(0), np.full(50, -0.5), np.full(50, -0.5), np.array([-0.5, 0.0]))
    assert watch(np.zeros(10), np.array([1e-6]))


def test_a_constant_offset_has_the_features_of_silence() -> None:
    """Why a constant is silence: the fbank takes each frame's mean out (remove_dc_offset)."""
    cfg = FeatureConfig()
    zeros = compute_fbank(np.zeros(cfg.sample_rate, np.float32), cfg)
    offset = compute_fbank(np.full(cfg.sample_rate, 0.25, np.float32), cfg)
    assert np.array_equal(np.asarray(zeros), np.asarray(offset))


def test_a_constant_at_another_rate_is_silence_before_the_resampler_rings(tmp_path) -> None:
    """classify reads through soxr to 16 kHz, which rings at a constant's ends: watched there, a 44.1-kHz
    file of one value was a signal to classify and silence to own data (read at its own rate)."""
    import soundfile as sf

    from audio_core.audio_file import read_chunks
    from training.own_data import scan_file

    path = tmp_path / "dc44.wav"
    sf.write(path, np.full(44100 * 3, 0.25, np.float32), 44100, subtype="FLOAT")
    resampled = np.concatenate(list(read_chunks(path, 16000)))
    assert np.ptp(resampled) > 0  # the ringing a watch of the resampled audio took for a signal
    signal = SignalWatch()
    assert sum(c.size for c in read_chunks(path, 16000, signal=signal)) == resampled.size
    assert not signal.heard and scan_file(path)[1] is False
