"""A recurrent model's clips shorter than its window train on their own last steps, not on padding."""

from __future__ import annotations

import numpy as np
import torch

from audio_core.fbank import compute_fbank
from audio_core.windows import pad_with_silence
from models.common import FeatureConfig, ModelInfo, Normalization
from models.registry import build_model
from training.augment import AugmentConfig
from training.short_clips import align_short_rows, end_aligned, heard_weights
from training.train_config import TrainConfig
from training.train_steps import clip_step

FRAMES = 100  # six whole columns of 16 frames; the last 4 frames fill none
COLUMN = 16
WINDOW_SAMPLES = 400 + (FRAMES - 1) * 160  # 25-ms frames every 10 ms at 16 kHz


def test_a_short_rows_audio_ends_with_the_last_whole_column_and_its_padding_comes_first() -> None:
    x = torch.arange(2 * FRAMES, dtype=torch.float32).reshape(2, FRAMES, 1)
    moved = end_aligned(x, np.array([30, FRAMES]), COLUMN)
    assert torch.equal(moved[0, 96 - 30 : 96, 0], x[0, :30, 0])  # its 30 frames end at frame 96
    assert set(moved[0, : 96 - 30, 0].tolist()) | set(moved[0, 96:, 0].tolist()) == set(x[0, 30:, 0].tolist())
    assert torch.equal(moved[1], x[1])  # a whole row is left as it is
    # the last 4 steps end at frames 48, 64, 80, 96; audio from frame 66 / 0 / 95: the steps that heard
    # some of it, each row weighing the same in all (a clip of one heard step counts as much as a whole one)
    weights = heard_weights(np.array([30, FRAMES, 1]), FRAMES, COLUMN, 4)
    assert weights.tolist() == [[0, 0, 2, 2], [1, 1, 1, 1], [0, 0, 0, 4]]


def test_a_batch_of_whole_rows_is_untouched() -> None:
    x = torch.randn(3, FRAMES, 8)
    same, weights, unshifted = align_short_rows(x, np.full(3, FRAMES), COLUMN, 4)
    assert same is x and weights is None and unshifted is None
    assert align_short_rows(x, None, COLUMN, 4)[0] is x


def _mamba() -> tuple[torch.nn.Module, ModelInfo]:
    config = {"num_classes": 3, "num_mel_bins": 16, "d_model": 16, "n_layers": 1, "clip_steps": 3}
    torch.manual_seed(0)
    model = build_model("streaming_mamba", {**config, "dropout": 0.0})
    info = ModelInfo("streaming_mamba", config, ["a", "b", "c"], FeatureConfig(num_mel_bins=16))
    info.normalization = Normalization(-6.0, 5.0, FRAMES)
    return model, info


def test_a_short_clips_loss_is_that_of_its_own_last_steps_and_whole_clips_are_unchanged(esc50) -> None:
    """The loss of a batch with a 0.3-s clip padded to the window (the training input) equals the loss of
    the model's steps that heard the clip, the clip end-aligned; a time shift leaves the short clip in
    place; a batch of whole clips gives the loss it gave before (no ``real_frames``), bit for bit."""
    model, info = _mamba()
    rate = info.features.sample_rate
    clip = esc50.read_mono(esc50.clips(1)[0])
    wave = loudest(clip, WINDOW_SAMPLES)
    whole = fbank_of(pad_with_silence(wave, WINDOW_SAMPLES), info)  # a whole window
    short_wave = loudest(clip, round(0.3 * rate))
    assert np.sqrt(np.mean(np.square(short_wave))) > 1e-3  # real sound, not silence
    short = fbank_of(pad_with_silence(short_wave, WINDOW_SAMPLES), info)
    real = compute_fbank(short_wave, info.features).shape[0]  # 28 frames of its own
    y = np.array([1, 2])
    x = np.stack([whole, short])
    cfg = training_config(time_shift_frac=0.0)
    loss, *_ = clip_step(
        model, x, y, cfg, torch.Generator().manual_seed(0), info, real_frames=np.array([FRAMES, real])
    )
    # the reference: the short clip end-aligned by hand, the steps that heard it
    aligned = torch.from_numpy(x.copy())
    aligned[1] = torch.from_numpy(np.concatenate([short[real:96], short[:real], short[96:]]))
    logits = model.last_steps_logits(info.normalization.apply(aligned))  # (2, 3, C)
    heard = [[s for s in range(3) if 96 - 16 * (2 - s) > 96 - real or b == 0] for b in range(2)]
    assert heard == [[0, 1, 2], [1, 2]]  # the short clip's first of the three steps heard only padding
    per_row = [  # each row: the mean over its steps that heard it
        torch.nn.functional.cross_entropy(
            logits[b, steps], torch.full((len(steps),), int(y[b])), label_smoothing=cfg.label_smoothing
        )
        for b, steps in enumerate(heard)
    ]
    torch.testing.assert_close(loss, torch.stack(per_row).mean())
    one = x[1:]
    for frac in (0.0, 0.5):  # the short clip is not shifted
        got, *_ = clip_step(
            model,
            one,
            y[1:],
            training_config(time_shift_frac=frac),
            torch.Generator().manual_seed(0),
            info,
            real_frames=np.array([real]),
        )
        torch.testing.assert_close(
            got,
            clip_step(
                model, one, y[1:], cfg, torch.Generator().manual_seed(0), info, real_frames=np.array([real])
            )[0],
        )
    both = np.stack([whole, whole])
    shifting = training_config()
    before, *_ = clip_step(model, both, y, shifting, torch.Generator().manual_seed(0), info)
    after, *_ = clip_step(
        model, both, y, shifting, torch.Generator().manual_seed(0), info, real_frames=np.full(2, FRAMES)
    )
    assert torch.equal(before, after)


def training_config(**augment: float) -> TrainConfig:
    quiet = {"mixup_prob": 0.0, "gain_db": 0.0, "freq_mask": 0, "time_mask": 0, **augment}
    return TrainConfig(augment=AugmentConfig(**quiet), precision="fp32")


def loudest(wave: np.ndarray, size: int) -> np.ndarray:
    """The loudest ``size`` samples of ``wave``."""
    starts = range(0, wave.size - size, 160)
    best = max(starts, key=lambda s: float(np.square(wave[s : s + size]).sum()))
    return wave[best : best + size]


def fbank_of(wave: np.ndarray, info: ModelInfo) -> np.ndarray:
    fbank = compute_fbank(wave, info.features).numpy()
    assert fbank.shape[0] == FRAMES
    return fbank
