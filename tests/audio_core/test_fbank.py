"""Kaldi fbank: agreement with torchaudio's golden outputs, and streaming == offline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from audio_core.fbank import (
    FBANK_BLOCK_FRAMES,
    StreamingFbank,
    compute_fbank,
    fbank_frames,
    fbank_frames_reference,
    mel_banks,
)
from models.common import FeatureConfig

# Below this log energy (power 4.5e-5, ~80 dB under a full-scale tone) the chirp's values sit on float32
# FFT round-off, which differs between FFT builds (the fixtures come from another build than this torch's).
NOISE_FLOOR_LOG = -10.0


def _fixture_cases(fixtures_dir):
    data = np.load(fixtures_dir / "kaldi_fbank.npz")
    configs = json.loads(bytes(data["configs_json"]).decode())
    for name, kwargs in configs.items():
        cfg = FeatureConfig(
            sample_rate=kwargs["sample_frequency"],
            num_mel_bins=kwargs["num_mel_bins"],
            window_type=kwargs.get("window_type", "povey"),
            frame_shift_ms=kwargs.get("frame_shift", 10.0),
        )
        for key in data.files:
            if key.startswith(f"fbank/{name}/"):
                signal = key.split("/")[-1]
                yield name, signal, cfg, data[f"wave/{signal}"], data[key]


def test_matches_torchaudio_fixtures(fixtures_dir):
    cases = list(_fixture_cases(fixtures_dir))
    assert len(cases) == 15
    for name, signal, cfg, wave, ref in cases:
        out = compute_fbank(wave, cfg).numpy()
        assert out.shape == ref.shape, (name, signal)
        above = ref > NOISE_FLOOR_LOG
        err = np.abs(out - ref)
        assert err[above].max() <= 1e-3, (name, signal, err[above].max())
        # Near the floor only float32 round-off differs; it stays small in absolute terms.
        assert err.max() <= 2.5e-2, (name, signal, err.max())
        if signal != "chirp_10s":
            assert err.max() <= 3e-3, (name, signal, err.max())


def test_frame_counts_follow_snip_edges():
    cfg = FeatureConfig()
    assert cfg.num_frames(80000) == 498
    assert cfg.num_frames(163840) == 1022
    assert cfg.num_frames(399) == 0
    assert compute_fbank(np.zeros(399, np.float32), cfg).shape == (0, 128)


def test_mel_banks_are_triangles_summing_to_shape():
    banks = mel_banks(128, 512, 16000, 20.0, 0.0)
    assert banks.shape == (128, 257)
    assert torch.all(banks >= 0) and torch.all(banks[:, -1] == 0)
    # Kaldi's 128-bin layout at 512 points leaves exactly one low filter without an FFT bin (as torchaudio).
    assert int((banks.sum(dim=1) > 0).sum()) == 127


@pytest.mark.parametrize("chunking", ["1", "160", "1000", "random"])
def test_streaming_equals_offline(esc50_dir, chunking):
    wave, rate = sf.read(esc50_dir / "audio" / "1-100032-A-0.flac", dtype="float32")
    assert rate == 16000
    if chunking == "1":
        wave = wave[:8000]  # one sample at a time is slow in Python; half a second is plenty
    cfg = FeatureConfig(num_mel_bins=64)
    offline = compute_fbank(wave, cfg)
    stream = StreamingFbank(cfg)
    rng = np.random.default_rng(0)
    pieces, pos = [], 0
    while pos < len(wave):
        size = int(rng.integers(1, 3000)) if chunking == "random" else int(chunking)
        pieces.append(stream.accept(wave[pos : pos + size]))
        pos += size
    streamed = torch.cat(pieces)
    assert stream.frames_emitted == offline.shape[0]
    assert streamed.shape == offline.shape
    torch.testing.assert_close(streamed, offline, atol=1e-5, rtol=0)


def test_dc_offset_does_not_change_features():
    rng = np.random.default_rng(1)
    wave = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    cfg = FeatureConfig()
    a = compute_fbank(wave, cfg)
    b = compute_fbank(wave + 0.25, cfg)
    torch.testing.assert_close(a, b, atol=2e-3, rtol=0)


@pytest.mark.parametrize("bins, window", [(64, "hanning"), (128, "povey"), (40, "hamming")])
def test_fast_fbank_equals_the_plain_definition(esc50_dir, bins, window):
    """``fbank_frames`` (blocked, power folded into the mel product) against ``fbank_frames_reference`` on
    real audio long enough to span several blocks, quiet stretches included."""
    names = sorted(p.name for p in (esc50_dir / "audio").glob("*.flac"))[:3]
    wave = np.concatenate([sf.read(esc50_dir / "audio" / n, dtype="float32")[0] for n in names])
    cfg = FeatureConfig(num_mel_bins=bins, window_type=window)
    frames = torch.from_numpy(wave).unfold(0, cfg.frame_length, cfg.frame_shift)[: cfg.num_frames(wave.size)]
    assert frames.shape[0] > 2 * FBANK_BLOCK_FRAMES + 1
    fast, ref = fbank_frames(frames, cfg), fbank_frames_reference(frames, cfg)
    above = ref > NOISE_FLOOR_LOG
    assert float((fast - ref).abs()[above].max()) <= 5e-4  # float32 round-off, relative to the power
    assert float((fast - ref).abs().max()) <= 5e-3  # round-off of near-silent frames' tiny powers
