"""Whole-file and streaming scoring of a recurrent model (the causal streaming Mamba, small, seeded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from esc50_subset import small_esc50_rows

from audio_core.audio_file import read_audio
from audio_core.fbank import compute_fbank
from audio_core.windows import checkpoint_plan
from models.checkpoint import save_checkpoint
from models.common import FeatureConfig, ModelInfo, Normalization
from models.registry import build_model
from streamd.collect import replay_collect
from training.evaluate import offline_stream_predictions, waveform_scores, window_scores
from training.soundscape_scoring import predictions_from_messages

LABELS = ["dog", "rooster", "rain"]


@pytest.fixture(scope="module")
def mamba() -> tuple[torch.nn.Module, ModelInfo]:
    config = {"num_classes": 3, "num_mel_bins": 64, "d_model": 32, "n_layers": 2, "dropout": 0.0}
    torch.manual_seed(0)
    model = build_model("streaming_mamba", config).eval()
    info = ModelInfo("streaming_mamba", config, LABELS, FeatureConfig(num_mel_bins=64), Normalization())
    return model, info


@pytest.fixture(scope="module")
def wave(esc50_root: Path) -> np.ndarray:
    rows = small_esc50_rows(("dog", "rain"), 1, (1,))
    return np.concatenate([read_audio(esc50_root / "audio" / r["filename"]) for r in rows])  # 10 s


def test_window_scores_are_the_steps_that_end_with_each_window(mamba, wave) -> None:
    model, info = mamba
    fbank = compute_fbank(wave, info.features)
    plan = checkpoint_plan(info, 1.0)
    starts, scores = window_scores(model, info, wave, plan)
    ends = [s // info.features.frame_shift + plan.frames_per_window for s in starts]
    assert ends[0] == info.normalization.target_frames and ends[-1] == fbank.shape[0]
    x = info.normalization.apply(fbank)[None]
    with torch.no_grad():
        for end, row in zip(ends, scores, strict=True):
            prefix = torch.softmax(model(x[:, :end]), dim=1)[0]  # forward = the last step over the prefix
            np.testing.assert_allclose(row, prefix.numpy(), atol=1e-5)
    np.testing.assert_allclose(
        waveform_scores(model, info, wave, 1.0), scores.numpy().mean(axis=0), atol=1e-6
    )
    short = waveform_scores(model, info, wave[:8000], 1.0)  # shorter than a window: its last step
    with torch.no_grad():  # 0.5 s: 48 frames, three whole columns; the forward is the last step
        x = info.normalization.apply(compute_fbank(wave[:8000], info.features))[None]
        last = torch.softmax(model(x), 1)
    np.testing.assert_allclose(short, last[0].numpy(), atol=1e-5)


def test_daemon_replay_of_a_recurrent_model_equals_the_offline_reference(mamba, wave, tmp_path: Path) -> None:
    model, info = mamba
    checkpoint = save_checkpoint(tmp_path / "mamba.safetensors", model, info)
    path = tmp_path / "ten_seconds.wav"
    sf.write(path, wave[: 10 * 16000 - 1234], 16000, subtype="PCM_16")  # not a whole number of columns
    stored = read_audio(path)
    reference = offline_stream_predictions(model, info, stored, hop_s=1.0)
    replayed = predictions_from_messages(replay_collect([path], checkpoint, top_k=1))
    assert len(replayed) == len(reference) == info.features.num_frames(stored.size) // 16  # whole columns
    for r, p in zip(reference, replayed, strict=True):
        assert (p.t_start, p.t_end) == pytest.approx((r.t_start, r.t_end))
        assert p.label == r.label
        assert p.score == pytest.approx(r.score, abs=1e-4)


@pytest.mark.parametrize("cache", [False, True])
def test_evaluate_scores_a_short_clip_as_classify_does(mamba, wave, tmp_path: Path, cache: bool) -> None:
    """Clip-level evaluate (the training-time clip scores) and classify's whole-file rule agree on a clip
    shorter than one window: its last step; a whole 5-s clip is still its first window's last step."""
    from training.clips import Clip, ClipSet
    from training.evaluate import clip_scores

    model, info = mamba
    short, whole = tmp_path / "short.wav", tmp_path / "whole.wav"
    sf.write(short, wave[:32000], 16000, subtype="FLOAT")  # 2 s
    sf.write(whole, wave[80000:160000], 16000, subtype="FLOAT")  # 5 s
    clips = ClipSet([Clip(short, (0,)), Clip(whole, (2,))], LABELS)
    got = clip_scores(model, info, clips, tmp_path / "cache" if cache else None)
    np.testing.assert_allclose(got[0], waveform_scores(model, info, read_audio(short), 1.0), atol=1e-5)
    x = info.normalization.apply(compute_fbank(read_audio(whole), info.features))[None, :498]
    with torch.no_grad():
        np.testing.assert_allclose(got[1], torch.softmax(model(x), 1)[0].numpy(), atol=1e-5)
