"""Training on a CUDA device (``train.compute`` / ``--compute``): the same run as on the CPU, its state
resumable on the CPU, and a missing device refused in one line before any feature is computed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from esc50_subset import small_esc50_rows

from models.checkpoint import load_checkpoint, read_info
from models.common import FeatureConfig, ModelInfo, Normalization
from models.registry import build_model
from training.augment import AugmentConfig
from training.cache import cached_fbanks
from training.clips import Clip
from training.loop import train_model
from training.train_config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
FEATURES = FeatureConfig(num_mel_bins=64)
NORM = Normalization(target_frames=300)
LABELS = ["dog", "rooster", "rain"]
MODEL_CONFIG = {"num_classes": 3, "num_mel_bins": 64, "channels": [8, 16], "dropout": 0.0}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def data(esc50_root: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = small_esc50_rows(tuple(LABELS), 3, (1,))
    clips = [Clip(esc50_root / "audio" / r["filename"], (LABELS.index(r["category"]),), 1) for r in rows]
    return cached_fbanks(clips, FEATURES, None, NORM.target_frames), np.array([c.targets[0] for c in clips])


def _config(compute: str, epochs: int = 4) -> TrainConfig:
    aug = AugmentConfig(mixup_prob=0.5, mixing="bc", time_shift_frac=0.1, gain_db=3.0, freq_mask=8)
    return TrainConfig(
        epochs=epochs, batch_size=3, lr=3e-3, warmup_epochs=1.0, precision="fp32", eval_every=0, seed=3,
        compute=compute, augment=aug,
    )  # fmt: skip


def _train(data, compute: str, out: Path, epochs: int = 4, model_seed: int = 0):
    torch.manual_seed(model_seed)
    model = build_model("resnet_cnn", MODEL_CONFIG)
    info = ModelInfo("resnet_cnn", MODEL_CONFIG, LABELS, FEATURES, NORM)
    return train_model(model, data, data, _config(compute, epochs), info, out, progress=False)


def test_an_unknown_compute_is_refused() -> None:
    with pytest.raises(ValueError, match=r"train\.compute must be one of auto, cpu, cuda"):
        TrainConfig(compute="gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_device_is_refused_by_the_loop(data, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^train.compute cuda: no CUDA device is available$"):
        _train(data, "cuda", tmp_path)
    assert not (tmp_path / "train_state.safetensors").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_the_command_refuses_cuda_in_one_line_before_any_feature(tmp_path: Path) -> None:
    config = REPO / "configs" / "train" / "esc50_resnet_cnn.toml"
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "streamd", "train", str(config), "--compute", "cuda"]
    cmd += ["--out", str(tmp_path / "o"), "--set", f'experiment.cache_dir="{cache}"']
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2, proc.stderr
    refusal = "streamd: error: train.compute cuda: no CUDA device is available"
    assert proc.stderr.strip().splitlines() == [refusal]
    assert not cache.exists() and not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_print_config_refuses_cuda_as_the_run_does(capsys: pytest.CaptureFixture[str]) -> None:
    """``train CONFIG.toml --compute cuda --print-config`` printed the config and exited 0 without a GPU,
    where the run refuses it: now the run's line, exit 2, nothing printed (also for ``--set``)."""
    from streamd.cli import main

    config = str(REPO / "configs" / "train" / "esc50_resnet_cnn.toml")
    for asked in (["--compute", "cuda"], ["--set", 'train.compute="cuda"']):
        assert main(["train", config, *asked, "--print-config"]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err == "streamd: error: train.compute cuda: no CUDA device is available\n"
    assert main(["train", config, "--compute", "cpu", "--print-config"]) == 0
    assert 'compute = "cpu"' in capsys.readouterr().out
    # train --data's --print-config too (it printed, and computed features, exit 0)
    data = str(REPO.parent / "shared" / "data" / "esc50" / "audio")
    assert main(["train", "--data", data, "--compute", "cuda", "--print-config"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "streamd: error: --compute cuda: no CUDA device is available\n"


@pytest.mark.cuda
@needs_cuda
def test_a_cuda_run_equals_the_cpu_run_and_resumes_on_the_cpu(data, tmp_path: Path) -> None:
    cpu = _train(data, "cpu", tmp_path / "cpu")
    gpu = _train(data, "cuda", tmp_path / "gpu")  # augmentation is drawn on the CPU either way
    np.testing.assert_allclose([h["loss"] for h in gpu.history], [h["loss"] for h in cpu.history], rtol=2e-2)
    assert read_info(gpu.checkpoint).extra["train_config"]["compute"] == "cuda"
    model, info = load_checkpoint(gpu.checkpoint)  # a checkpoint trained on the GPU loads on the CPU
    assert next(model.parameters()).device.type == "cpu" and info.labels == LABELS
    more = train_model(  # the GPU run's state continues on the CPU (the device is free to change)
        build_model("resnet_cnn", MODEL_CONFIG), data, data, _config("cpu", epochs=6),
        ModelInfo("resnet_cnn", MODEL_CONFIG, LABELS, FEATURES, NORM), tmp_path / "gpu", progress=False,
    )  # fmt: skip
    assert [h["epoch"] for h in more.history] == [1, 2, 3, 4, 5, 6]
    assert more.history[:4] == gpu.history


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_own_data_refuses_cuda_before_reading_the_data(tmp_path: Path) -> None:
    """``train --data DIR --compute cuda`` without a GPU: said before any file is read (the folder given
    does not even exist: its error would come first otherwise)."""
    from audio_core.compute import ComputeError
    from training.own_train import OwnOptions, run_own_data

    with pytest.raises(ComputeError, match=r"^--compute cuda: no CUDA device is available$"):
        run_own_data(OwnOptions(data=tmp_path / "not_there", compute="cuda", cache_dir=tmp_path / "c"))
    assert not (tmp_path / "c").exists()
