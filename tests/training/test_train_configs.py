"""The ESC-50 experiment configs in configs/train parse, and each builds its model for 50 classes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.registry import build_model
from training.clips import ClipSet
from training.experiment import filled_model_config
from training.experiment_spec import load_experiment

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "train").glob("esc50_*.toml"))
FAMILIES = {"resnet_cnn", "piczak_cnn", "ast", "aum", "streaming_mamba"}


def test_every_family_has_a_config() -> None:
    archs = {load_experiment(path).arch for path in CONFIGS}
    assert archs == FAMILIES


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds_its_model(path: Path) -> None:
    exp = load_experiment(path)
    assert exp.mode == "cv" and exp.folds == [1, 2, 3, 4] and exp.reader == "esc50"
    assert exp.reader_options["csv_path"].as_posix().endswith("esc50/meta/esc50.csv")
    assert exp.normalization.target_frames == 498  # the daemon's 5-s window
    labels = [f"class{i}" for i in range(50)]
    config = filled_model_config(exp, ClipSet([], labels))
    assert config["num_classes"] == 50 and config["num_mel_bins"] == exp.features.num_mel_bins
    torch.manual_seed(0)
    model = build_model(exp.arch, config).eval()
    with torch.no_grad():
        logits = model(torch.zeros(1, exp.normalization.target_frames, exp.features.num_mel_bins))
    assert logits.shape == (1, 50)


def test_the_short_clip_config_builds_its_model() -> None:
    """configs/train/esc10_1s_resnet_cnn.toml: the hand-tuned 1-s ESC-10 recipe (a user's own-data TOML)."""
    exp = load_experiment(CONFIGS[0].parent / "esc10_1s_resnet_cnn.toml")
    assert exp.mode == "single" and exp.reader == "own" and exp.val_folds == [3]
    assert exp.normalization.target_frames == 98 and exp.train.background > 0  # a 1-s window
    config = filled_model_config(exp, ClipSet([], [f"class{i}" for i in range(10)]))
    model = build_model(exp.arch, config).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 98, exp.features.num_mel_bins)).shape == (1, 10)
