"""Shared fixtures for the training tests: the real ESC-50 data that sits beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest
from esc50_subset import ESC50, ESC50_CSV


@pytest.fixture(scope="session")
def esc50_root() -> Path:
    if not ESC50_CSV.exists():
        pytest.skip(f"ESC-50 data not found at {ESC50}")
    return ESC50


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory, esc50_root: Path) -> Path:
    """A small residual CNN trained for a few epochs on 12 real clips of dog, rooster and rain (folds 1-2)."""
    from esc50_subset import write_esc50_subset, write_experiment

    from training.experiment import run_experiment
    from training.experiment_spec import load_experiment

    root = tmp_path_factory.mktemp("trained")
    csv_path = write_esc50_subset(root, ("dog", "rooster", "rain"), 2, (1, 2))
    tables = """
[model]
arch = "resnet_cnn"
[model.config]
channels = [8, 16]
dropout = 0.0
[train]
epochs = 6
batch_size = 4
lr = 0.003
warmup_epochs = 1
precision = "fp32"
label_smoothing = 0.0
eval_every = 0
[train.augment]
mixup_prob = 0.0
"""
    config = write_experiment(root / "tiny.toml", csv_path, esc50_root / "audio", root / "run", tables=tables)
    run_experiment(load_experiment(config), progress=False)
    return root / "run" / "full" / "model.safetensors"
