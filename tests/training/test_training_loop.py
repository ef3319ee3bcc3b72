"""The training loop on real ESC-50 fbanks: schedule, losses against torch's, a run that lowers the
loss, checkpoint round trips, exact resume, and multi-label (BCE) training."""

from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from esc50_subset import small_esc50_rows
from safetensors.numpy import load_file

from models.checkpoint import load_checkpoint, read_info
from models.common import FeatureConfig, ModelInfo, Normalization
from models.registry import build_model
from training import loop
from training.augment import AugmentConfig
from training.cache import cached_fbanks
from training.clips import Clip
from training.loop import train_model
from training.losses import loss_fn
from training.predict import predict_scores
from training.schedule import lr_at
from training.train_config import TrainConfig

FEATURES = FeatureConfig(num_mel_bins=64)
NORM = Normalization(target_frames=300)
LABELS = ["dog", "rooster", "rain"]
MODEL_CONFIG = {"num_classes": 3, "num_mel_bins": 64, "channels": [8, 16], "dropout": 0.0}


@pytest.fixture(scope="module")
def data(esc50_root: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = small_esc50_rows(tuple(LABELS), 3, (1,))
    clips = [Clip(esc50_root / "audio" / r["filename"], (LABELS.index(r["category"]),), 1) for r in rows]
    x = cached_fbanks(clips, FEATURES, None, NORM.target_frames)
    return x, np.array([c.targets[0] for c in clips])


def _config(**changes) -> TrainConfig:
    base = {
        "epochs": 6,
        "batch_size": 3,
        "lr": 3e-3,
        "warmup_epochs": 1.0,
        "precision": "fp32",
        "eval_every": 0,
        "ema_decay": 0.9,
        "seed": 3,
        "augment": AugmentConfig(mixup_prob=0.0, time_shift_frac=0.1, gain_db=3.0, freq_mask=8, time_mask=20),
    }
    return TrainConfig(**{**base, **changes})


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("resnet_cnn", MODEL_CONFIG)


def _info(multi_label: bool = False) -> ModelInfo:
    return ModelInfo("resnet_cnn", MODEL_CONFIG, LABELS, FEATURES, NORM, multi_label)


def test_learning_rate_schedule() -> None:
    total, warmup, base = 100, 10, 1e-3
    assert lr_at(0, total, warmup, base, 0.01) == pytest.approx(base / warmup)
    assert lr_at(9, total, warmup, base, 0.01) == pytest.approx(base)
    for step in (10, 40, 77, 100):
        progress = (step - warmup) / (total - warmup)
        expected = base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))
        assert lr_at(step, total, warmup, base, 0.01) == pytest.approx(expected)
    values = [lr_at(s, total, warmup, base, 0.01) for s in range(warmup, total)]
    assert all(a >= b for a, b in pairwise(values))


def test_losses_match_torch() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, generator=gen)
    labels = torch.randint(0, 5, (8,), generator=gen)
    hot = F.one_hot(labels, 5).float()
    expected = F.cross_entropy(logits, labels, label_smoothing=0.1)
    assert loss_fn(logits, hot, False, 0.1) == pytest.approx(float(expected), rel=1e-6)
    multi = (torch.rand(8, 5, generator=gen) < 0.3).float()
    assert loss_fn(logits, multi, True, 0.1) == pytest.approx(
        float(F.binary_cross_entropy_with_logits(logits, multi))
    )


def test_training_lowers_the_loss_and_the_checkpoint_round_trips(data, tmp_path: Path, capsys) -> None:
    x, y = data
    plain = AugmentConfig(mixup_prob=0.0, time_shift_frac=0.0, gain_db=0.0, freq_mask=0, time_mask=0)
    cfg = _config(epochs=8, label_smoothing=0.0, augment=plain)
    result = train_model(_model(), (x, y), (x, y), cfg, _info(), tmp_path, progress=False)
    lines = capsys.readouterr().out.splitlines()  # no bars: a plain line per epoch, as when redirected
    assert lines.pop(0) == f"{tmp_path.name}: training on cpu in fp32"  # where it runs, said first
    assert [line.split()[1:3] for line in lines] == [
        ["epoch", f"{k}/{cfg.epochs}"] for k in range(1, cfg.epochs + 1)
    ]
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 8 and losses[-1] < 0.6 * losses[0]
    assert result.history[-1]["val_acc"] == result.val_accuracy
    model, info = load_checkpoint(result.checkpoint)
    assert info.labels == LABELS and info.features == FEATURES and info.normalization == NORM
    assert read_info(result.checkpoint).extra["train_config"]["epochs"] == 8
    assert read_info(result.checkpoint).extra["train_config"]["compute"] == "cpu"  # auto, as resolved
    direct = predict_scores(model, x, info, precision="fp32")
    assert direct.shape == (len(x), 3)
    np.testing.assert_allclose(direct.sum(axis=1), 1.0, rtol=1e-5)
    again, _ = load_checkpoint(result.checkpoint)
    np.testing.assert_array_equal(predict_scores(again, x, info, precision="fp32"), direct)


class _Crash(Exception):
    pass


def test_resume_after_a_crash_continues_exactly(
    data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = data
    straight = train_model(_model(), (x, y), None, _config(epochs=4), _info(), tmp_path / "a", progress=False)

    real_save = loop.save_state

    def save_then_crash(path, model, ema, opt, gen, epoch, *rest):
        real_save(path, model, ema, opt, gen, epoch, *rest)
        if epoch == 2:
            raise _Crash

    monkeypatch.setattr(loop, "save_state", save_then_crash)
    with pytest.raises(_Crash):
        train_model(_model(), (x, y), None, _config(epochs=4), _info(), tmp_path / "b", progress=False)
    monkeypatch.setattr(loop, "save_state", real_save)
    assert not (tmp_path / "b" / "model.safetensors").exists()
    # a differently initialised model: the saved weights, optimiser and RNG state must replace everything
    resumed = train_model(
        _model(seed=99), (x, y), None, _config(epochs=4), _info(), tmp_path / "b", progress=False
    )
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    a, b = load_file(str(straight.checkpoint)), load_file(str(resumed.checkpoint))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_multi_label_training_with_bce(data, tmp_path: Path) -> None:
    x, y = data
    multi = np.eye(3, dtype=np.float32)[y]
    multi[0, (y[0] + 1) % 3] = 1.0  # one clip with two labels
    cfg = _config(epochs=4, augment=AugmentConfig(mixup_prob=0.5, time_shift_frac=0.0, gain_db=0.0))
    result = train_model(
        _model(), (x, multi), (x, multi), cfg, _info(multi_label=True), tmp_path, progress=False
    )
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    model, info = load_checkpoint(result.checkpoint)
    assert info.multi_label
    scores = predict_scores(model, x, info, precision="fp32")
    assert ((scores > 0) & (scores < 1)).all() and not np.allclose(
        scores.sum(axis=1), 1.0
    )  # sigmoid, not softmax


def test_resuming_from_another_init_checkpoint_is_refused(data, tmp_path: Path) -> None:
    """The weights a run started from are part of what its state depends on: ``--init`` another
    checkpoint (or none, or one where there was none) over a saved run is refused, not silently resumed."""
    from training.resume import ResumeMismatch

    def run(init: str | None, epochs: int) -> None:
        info = _info()
        if init is not None:
            info.extra["init_source"] = init
        train_model(_model(), data, None, _config(epochs=epochs), info, tmp_path, progress=False)

    run("a.safetensors sha256:0123456789abcdef", 1)
    with pytest.raises(ResumeMismatch, match=r"init: 'a\.safetensors sha256:0123.*' -> 'b\.safetensors"):
        run("b.safetensors sha256:fedcba9876543210", 2)
    with pytest.raises(ResumeMismatch, match=r"init: 'a\.safetensors sha256:0123.*' -> None"):
        run(None, 2)
    run("a.safetensors sha256:0123456789abcdef", 2)  # the same init resumes
