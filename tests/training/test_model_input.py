"""The ``[normalization]`` rules of an experiment config are the bounds a checkpoint takes: a value the
checkpoint writer would refuse is refused when the config is read, before any training."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from own_clips import write_class_folders

from models.metadata_check import MAX_NORM_MEAN, MAX_NORM_STD, check_metadata
from streamd.cli import main
from training.model_input import checked_normalization

REFUSED = [
    ("mean", float("nan"), "normalization.mean must be a finite number, got nan"),
    ("mean", float("inf"), "normalization.mean must be a finite number, got inf"),
    ("mean", 1e30, "normalization.mean must be at most 10000, got 1e+30"),
    ("mean", -1e30, "normalization.mean must be >= -10000, got -1e+30"),
    ("std", 1e30, "normalization.std must be at most 10000, got 1e+30"),
    ("std", 0.0, "normalization.std must be positive, got 0.0"),
]


def _metadata(**normalization: float) -> dict:
    return {"arch": "resnet_cnn", "labels": ["a", "b"], "normalization": normalization}


@pytest.mark.parametrize(("key", "value", "message"), REFUSED)
def test_normalization_a_checkpoint_refuses_is_refused_when_the_config_is_read(
    key: str, value: float, message: str
) -> None:
    """``mean`` had no rule and ``std`` no upper bound: the run trained (on NaN) and the checkpoint writer
    refused the model at the end."""
    assert check_metadata(_metadata(**{key: value})) is not None  # the checkpoint refuses it
    with pytest.raises(ValueError, match=re.escape(message)):
        checked_normalization({key: value})


@pytest.mark.parametrize(
    "values", [{"mean": MAX_NORM_MEAN, "std": MAX_NORM_STD}, {"mean": -MAX_NORM_MEAN, "std": 1e-6}]
)
def test_normalization_at_the_checkpoints_bounds_is_taken_by_both(values: dict[str, float]) -> None:
    assert check_metadata(_metadata(**values)) is None
    assert checked_normalization(values).mean == values["mean"]


def test_a_mean_the_checkpoint_refuses_is_one_line_before_any_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_class_folders(tmp_path / "data")
    config = tmp_path / "mine.toml"
    config.write_text(
        f'[experiment]\noutput_dir = "{tmp_path / "run"}"\ncache_dir = "{tmp_path / "cache"}"\n'
        f'[data]\nreader = "own"\nroot = "{data}"\nfolds = [1, 4]\nval_folds = [4]\n'
        '[normalization]\ntarget_frames = 48\n[model]\narch = "resnet_cnn"\n'
        "[model.config]\nchannels = [8, 16]\n[train]\nepochs = 1\nbatch_size = 4\n"
    )
    monkeypatch.chdir(tmp_path)
    for extra in (["normalization.mean=nan"], ["normalization.mean=1e30"], ["normalization.std=1e30"]):
        assert main(["train", str(config), "--no-progress", "--set", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"streamd: error: {config}: normalization.") and err.count("\n") == 1, err
        assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()
    assert main(["train", "--data", str(data), "--epochs", "1", "--set", "normalization.mean=1e30"]) == 2
    err = capsys.readouterr().err
    assert err == f"streamd: error: --data {data}: normalization.mean must be at most 10000, got 1e+30\n"
    assert not (tmp_path / "runs").exists()
