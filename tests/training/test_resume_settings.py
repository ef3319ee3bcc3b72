"""Resuming a training state saved before a setting existed: allowed at that setting's default only."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.common import FeatureConfig, ModelInfo, Normalization
from training.resume import ResumeMismatch, check_resume, fingerprint, setting_defaults
from training.train_config import TrainConfig


def _info(**model: object) -> ModelInfo:
    config = {"num_classes": 3, "num_mel_bins": 32, "channels": [8, 16], **model}
    return ModelInfo("resnet_cnn", config, ["a", "b", "c"], FeatureConfig(num_mel_bins=32), Normalization())


def _older(saved: dict, *path: str) -> dict:
    """``saved`` as a state written before the setting at ``path`` existed."""
    node = saved
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return saved


def test_a_newer_setting_at_its_default_resumes() -> None:
    cfg, info = TrainConfig(), _info()
    current = fingerprint(cfg, info)
    saved = _older(fingerprint(cfg, info), "train", "augment", "time_stretch")
    saved = _older(saved, "train", "weight_decay")
    check_resume(Path("state"), saved, current, setting_defaults(cfg, info))


def test_a_newer_setting_away_from_its_default_is_refused() -> None:
    cfg, info = TrainConfig(), _info()
    cfg.augment.time_stretch = 0.2
    saved = _older(fingerprint(cfg, info), "train", "augment", "time_stretch")
    with pytest.raises(ResumeMismatch, match=r"train\.augment\.time_stretch.*--fresh"):
        check_resume(Path("state"), saved, fingerprint(cfg, info), setting_defaults(cfg, info))


def test_without_defaults_every_missing_setting_is_a_difference() -> None:
    cfg, info = TrainConfig(), _info()
    saved = _older(fingerprint(cfg, info), "train", "augment", "time_stretch")
    with pytest.raises(ResumeMismatch, match=r"train\.augment\.time_stretch"):
        check_resume(Path("state"), saved, fingerprint(cfg, info))


def test_a_setting_the_state_has_and_the_run_lacks_is_refused() -> None:
    cfg, info = TrainConfig(), _info()
    saved = fingerprint(cfg, info)
    saved["train"]["retired_setting"] = 1.0
    with pytest.raises(ResumeMismatch, match=r"train\.retired_setting"):
        check_resume(Path("state"), saved, fingerprint(cfg, info), setting_defaults(cfg, info))


def test_model_settings_default_from_the_architecture() -> None:
    cfg = TrainConfig()
    at_default, changed = _info(dropout=0.3), _info(dropout=0.5)
    check_resume(
        Path("state"),
        _older(fingerprint(cfg, at_default), "model", "dropout"),
        fingerprint(cfg, at_default),
        setting_defaults(cfg, at_default),
    )
    with pytest.raises(ResumeMismatch, match=r"model\.dropout"):
        check_resume(
            Path("state"),
            _older(fingerprint(cfg, changed), "model", "dropout"),
            fingerprint(cfg, changed),
            setting_defaults(cfg, changed),
        )


def test_device_and_precision_are_free_to_change_also_for_an_older_state() -> None:
    """``auto`` resolves per device (bf16 on a GPU, fp32 on a CPU without native bf16): a run moves
    between them; a state saved when the precision was still part of the fingerprint resumes too."""
    info = _info()
    gpu = fingerprint(TrainConfig(compute="cuda", precision="bf16"), info)
    cpu = fingerprint(TrainConfig(compute="cpu", precision="fp32"), info)
    check_resume(Path("state"), gpu, cpu, setting_defaults(TrainConfig(), info))
    older = {**cpu, "train": {**cpu["train"], "precision": "bf16"}}  # as an earlier streamd saved it
    check_resume(Path("state"), older, cpu, setting_defaults(TrainConfig(), info))


def test_a_state_from_before_the_init_was_fingerprinted_resumes() -> None:
    cfg, info = TrainConfig(), _info()
    current = {**fingerprint(cfg, info), "init": "a.safetensors sha256:0123456789abcdef"}
    check_resume(Path("state"), fingerprint(cfg, info), current, setting_defaults(cfg, info))
