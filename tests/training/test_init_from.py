"""Fine-tuning from a checkpoint: weights copied, head kept or re-initialised, positions adapted, settings
taken from the checkpoint (contradictions refused in one line), backbone freezing and learning rates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from esc50_subset import write_esc50_subset, write_experiment

from models.checkpoint import save_checkpoint
from models.common import FeatureConfig, ModelInfo, Normalization
from models.registry import build_model, config_to_dict, make_config
from training.experiment import run_experiment
from training.experiment_spec import ExperimentConfigError, load_experiment
from training.finetune_recipe import with_init
from training.init_from import load_init_weights, resolve_init
from training.loop import train_model
from training.param_groups import param_groups
from training.train_config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
CNN = {"num_mel_bins": 64, "channels": [8, 16], "dropout": 0.0}


def _checkpoint(path: Path, arch: str, config: dict, labels: list[str], frames: int = 200) -> Path:
    """A streamd checkpoint of a randomly initialised model (batch-norm statistics made non-trivial)."""
    torch.manual_seed(3)
    full = config_to_dict(make_config(arch, {**config, "num_classes": len(labels)}))
    model = build_model(arch, full)
    with torch.no_grad():
        for buf in model.buffers():
            if buf.dtype.is_floating_point:
                buf.uniform_(0.5, 1.5)
    info = ModelInfo(
        arch=arch,
        config=full,
        labels=labels,
        features=FeatureConfig(num_mel_bins=config.get("num_mel_bins", 128)),
        normalization=Normalization(mean=-5.0, std=4.0, target_frames=frames),
    )
    return save_checkpoint(path, model, info)


def _fresh(arch: str, config: dict, labels: list[str]) -> torch.nn.Module:
    torch.manual_seed(11)
    return build_model(arch, {**config, "num_classes": len(labels)})


def _states(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_same_labels_keep_every_weight(tmp_path: Path) -> None:
    labels = ["a", "b", "c"]
    ckpt = _checkpoint(tmp_path / "init.safetensors", "resnet_cnn", CNN, labels)
    model = _fresh("resnet_cnn", CNN, labels)
    report = load_init_weights(model, ckpt, labels)
    assert "head kept (same labels)" in report
    theirs = _states(ckpt)
    for key, value in model.state_dict().items():
        assert torch.equal(value, theirs[key]), key


def test_new_labels_reinitialise_the_head_only(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "init.safetensors", "resnet_cnn", CNN, ["a", "b", "c"])
    model = _fresh("resnet_cnn", CNN, ["x", "y"])
    fresh_head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("head.")}
    report = load_init_weights(model, ckpt, ["x", "y"])
    assert "head re-initialised (3 labels -> 2 new)" in report
    theirs = _states(ckpt)
    for key, value in model.state_dict().items():
        expected = fresh_head[key] if key.startswith("head.") else theirs[key]
        assert torch.equal(value, expected), key


def test_reordered_labels_reorder_the_head(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "init.safetensors", "resnet_cnn", CNN, ["a", "b", "c"])
    model = _fresh("resnet_cnn", CNN, ["c", "a", "b"])
    assert "reordered" in load_init_weights(model, ckpt, ["c", "a", "b"])
    theirs = _states(ckpt)
    assert torch.equal(model.head.weight, theirs["head.weight"][[2, 0, 1]])
    assert torch.equal(model.head.bias, theirs["head.bias"][[2, 0, 1]])


AST = {"size": "custom", "embed_dim": 32, "depth": 2, "num_heads": 2, "fstride": 16, "tstride": 16}


@pytest.mark.parametrize("new_frames", [64, 256])
def test_ast_positions_cut_from_the_centre_or_bilinear(tmp_path: Path, new_frames: int) -> None:
    ckpt = _checkpoint(tmp_path / "ast.safetensors", "ast", {**AST, "target_frames": 128}, ["a", "b"], 128)
    model = _fresh("ast", {**AST, "target_frames": new_frames}, ["a", "b"])
    report = load_init_weights(model, ckpt, ["a", "b"])
    old = _states(ckpt)["pos_embed"]
    f, t_old, t_new = 8, (128 - 16) // 16 + 1, (new_frames - 16) // 16 + 1  # 8 -> 4 or 16
    grid = old[0, 2:].reshape(f, t_old, -1)  # (f, t, D): frequency-major tokens
    if t_new < t_old:
        start = (t_old - t_new) // 2  # the centre: columns 2..5 of 0..7
        expected = grid[:, start : start + t_new]
        assert "cut from the centre" in report
    else:
        image = grid.permute(2, 0, 1).unsqueeze(0)
        expected = F.interpolate(image, size=(f, t_new), mode="bilinear", align_corners=False)
        expected = expected[0].permute(1, 2, 0)
        assert "bilinear" in report
    got = model.pos_embed.detach()
    assert torch.equal(got[0, :2], old[0, :2])
    assert torch.allclose(got[0, 2:].reshape(f, t_new, -1), expected, atol=1e-6)


def test_aum_positions_resampled(tmp_path: Path) -> None:
    cfg = {"size": "custom", "embed_dim": 16, "depth": 2, "variant": "Fo-Bi"}
    ckpt = _checkpoint(tmp_path / "aum.safetensors", "aum", {**cfg, "target_frames": 128}, ["a"], 128)
    model = _fresh("aum", {**cfg, "target_frames": 256}, ["a"])
    assert "8x8 -> 8x16 (bilinear)" in load_init_weights(model, ckpt, ["a"])
    old = _states(ckpt)["pos_embed.pos_embed"]
    image = old[0, 1:].reshape(8, 8, -1).permute(2, 0, 1).unsqueeze(0)
    expected = F.interpolate(image, size=(8, 16), mode="bilinear", antialias=True, align_corners=False)
    got = model.pos_embed.pos_embed.detach()
    assert torch.equal(got[0, :1], old[0, :1])
    assert torch.allclose(got[0, 1:], expected[0].permute(1, 2, 0).reshape(128, -1), atol=1e-6)


def _random_data(n: int, frames: int = 64, bins: int = 64, classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(-5, 3, (n, frames, bins)).astype(np.float32), rng.integers(0, classes, n)


def _info(labels: list[str]) -> ModelInfo:
    return ModelInfo(
        "resnet_cnn", {}, labels, FeatureConfig(num_mel_bins=64), Normalization(target_frames=64)
    )


def test_frozen_backbone_is_unchanged_and_the_head_learns(tmp_path: Path) -> None:
    model = _fresh("resnet_cnn", CNN, ["a", "b"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=1, batch_size=4, precision="fp32", freeze_backbone_epochs=1, eval_every=0)
    train_model(model, _random_data(8), None, cfg, _info(["a", "b"]), tmp_path, progress=False)
    for key, value in model.state_dict().items():
        if key.startswith("head."):
            assert not torch.equal(value, before[key]), key
        else:  # parameters and batch-norm statistics alike
            assert torch.equal(value, before[key]), key


def test_backbone_trains_after_the_frozen_epochs(tmp_path: Path) -> None:
    model = _fresh("resnet_cnn", CNN, ["a", "b"])
    before = model.stem[0].weight.detach().clone()
    cfg = TrainConfig(epochs=2, batch_size=4, precision="fp32", freeze_backbone_epochs=1, eval_every=0)
    train_model(model, _random_data(8), None, cfg, _info(["a", "b"]), tmp_path, progress=False)
    assert not torch.equal(model.stem[0].weight, before)


def test_backbone_learning_rate_scale(tmp_path: Path) -> None:
    model = _fresh("resnet_cnn", CNN, ["a", "b"])
    groups = param_groups(model, 0.05, backbone_lr_scale=0.1)
    head = {id(p) for p in model.head.parameters()}
    for group in groups:
        in_head = {id(p) in head for p in group["params"]}
        assert len(in_head) == 1
        assert group["lr_scale"] == (1.0 if in_head.pop() else 0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = TrainConfig(epochs=1, batch_size=4, precision="fp32", backbone_lr_scale=0.0, eval_every=0)
    train_model(model, _random_data(8), None, cfg, _info(["a", "b"]), tmp_path, progress=False)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]) != name.startswith("head."), name


def test_layer_decay_scales_transformer_blocks() -> None:
    model = _fresh("ast", {**AST, "target_frames": 64}, ["a"])
    scale = {id(p): g["lr_scale"] for g in param_groups(model, 0.05, layer_decay=0.5) for p in g["params"]}
    assert scale[id(model.head.weight)] == 1.0 and scale[id(model.norm.weight)] == 1.0
    assert scale[id(model.blocks[1].attn.qkv.weight)] == 0.5
    assert scale[id(model.blocks[0].attn.qkv.weight)] == 0.25
    assert scale[id(model.pos_embed)] == 0.125 and scale[id(model.patch_embed.proj.weight)] == 0.125


def test_recipe_replaces_from_scratch_values_unless_set() -> None:
    data = {"model": {"arch": "resnet_cnn"}, "train": {"epochs": 100, "lr": 0.002, "warmup_epochs": 3.0}}
    out, notes = with_init(data, "x.safetensors")
    assert out["model"]["init"] == "x.safetensors"
    assert out["train"] == {"epochs": 20, "lr": 0.001, "warmup_epochs": 1.0, "backbone_lr_scale": 0.25}
    assert notes == [
        "epochs 100 -> 20",
        "lr 0.002 -> 0.001",
        "warmup_epochs 3 -> 1",
        "backbone_lr_scale 1 -> 0.25",
    ]
    own = {"model": {"init": "x"}, "train": {"epochs": 40}}  # a fine-tuning config: its own values stay
    out, _ = with_init(own, None)
    assert out["train"]["epochs"] == 40 and out["train"]["backbone_lr_scale"] == 0.25
    assert with_init({"model": {"arch": "ast"}}, None) == ({"model": {"arch": "ast"}}, [])


TRAIN = """
[train]
epochs = 30
batch_size = 4
precision = "fp32"
eval_every = 0
"""


def _config(tmp_path: Path, esc50_root: Path, extra: str) -> Path:
    csv_path = write_esc50_subset(tmp_path / "meta", ("dog", "rooster"), 2, (1, 2))
    folds = "folds = [1, 2]\nval_folds = [2]"
    return write_experiment(
        tmp_path / "ft.toml", csv_path, esc50_root / "audio", tmp_path / "runs", mode="single", data=folds,
        tables=extra + TRAIN,
    )  # fmt: skip


def test_settings_come_from_the_init_checkpoint(tmp_path: Path, esc50_root: Path) -> None:
    ckpt = _checkpoint(tmp_path / "init.safetensors", "resnet_cnn", CNN, ["a", "b", "c"], frames=300)
    exp = load_experiment(
        _config(tmp_path, esc50_root, "[normalization]\ntarget_frames = 200"), init=str(ckpt)
    )
    assert exp.arch == "resnet_cnn" and exp.init == ckpt
    assert exp.features.num_mel_bins == 64
    assert (exp.normalization.mean, exp.normalization.std, exp.normalization.target_frames) == (
        -5.0,
        4.0,
        200,
    )
    assert exp.train.epochs == 20 and exp.train.backbone_lr_scale == 0.25
    summary = run_experiment(exp, progress=False)
    assert summary["runs"][0]["init"].endswith("head re-initialised (3 labels -> 2 new)")


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("[features]\nnum_mel_bins = 128", "features.num_mel_bins = 128"),
        ("[normalization]\nmean = -6.6", "normalization.mean = -6.6"),
        ('[model]\narch = "ast"', "model.arch = 'ast'"),
        ("[model]\n[model.config]\nchannels = [8, 32]", "model.config.channels = [8, 32]"),
    ],
)
def test_contradicting_settings_are_refused(tmp_path: Path, esc50_root: Path, extra: str, key: str) -> None:
    ckpt = _checkpoint(tmp_path / "init.safetensors", "resnet_cnn", CNN, ["a", "b"])
    with pytest.raises(ExperimentConfigError) as err:
        load_experiment(_config(tmp_path, esc50_root, extra), init=str(ckpt))
    assert key in str(err.value) and "contradicts the init checkpoint" in str(err.value)
    assert "\n" not in str(err.value)


def test_train_command_refuses_in_one_line(tmp_path: Path, esc50_root: Path) -> None:
    ckpt = _checkpoint(tmp_path / "init.safetensors", "resnet_cnn", CNN, ["a", "b"])
    config = _config(tmp_path, esc50_root, "[features]\nnum_mel_bins = 128")
    cmd = [sys.executable, "-m", "streamd", "train", str(config), "--init", str(ckpt), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "features.num_mel_bins = 128 contradicts" in lines[0], proc.stderr
    missing = [sys.executable, "-m", "streamd", "train", str(config), "--init", "nope.safetensors"]
    proc = subprocess.run(missing, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1
    assert "nope.safetensors: no such checkpoint file (nor a shipped model's name: default," in proc.stderr


def test_an_init_that_is_a_folder_or_no_name_says_so(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is a folder, not a checkpoint file"):
        resolve_init(tmp_path)
    with pytest.raises(ValueError, match="nor a shipped model's name: default, recurrent, ast"):
        resolve_init("defualt")
    assert resolve_init("default").is_file()


def test_train_command_fine_tunes_the_shipped_model(tmp_path: Path, esc50_root: Path) -> None:
    config = _config(tmp_path, esc50_root, "")
    cmd = [sys.executable, "-m", "streamd", "train", str(config), "--init", "default", "--no-progress"]
    cmd += ["--set", "train.epochs=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "fine-tuning recipe: lr 0.002 -> 0.001, warmup_epochs 3 -> 1, backbone_lr_scale" in proc.stdout
    assert "init from default.safetensors (resnet_cnn)" in proc.stdout
    assert "head re-initialised (50 labels -> 2 new)" in proc.stdout


def test_the_fine_tuning_config_starts_from_the_shipped_model() -> None:
    exp = load_experiment(REPO / "configs" / "finetune" / "esc50.toml")
    assert exp.init is not None and exp.init.name == "default.safetensors"
    assert exp.arch == "resnet_cnn" and exp.features.num_mel_bins == 64
    assert exp.train.epochs == 20 and exp.train.backbone_lr_scale == 0.25 and exp.init_notes == []


def _nan_checkpoint(tmp_path: Path, labels: list[str]) -> tuple[Path, str]:
    """A CNN checkpoint one of whose weights holds NaN (the writer takes it: the loader refuses it)."""
    from models.checkpoint import load_checkpoint

    good = _checkpoint(tmp_path / "good.safetensors", "resnet_cnn", CNN, labels, frames=48)
    model, info = load_checkpoint(good)
    name = next(k for k, v in model.state_dict().items() if v.is_floating_point() and v.ndim > 1)
    with torch.no_grad():
        model.state_dict()[name].view(-1)[0] = float("nan")
    return save_checkpoint(tmp_path / "nan.safetensors", model, info), name


def test_an_init_checkpoint_with_nan_weights_is_refused_before_any_epoch(
    tmp_path: Path, esc50_root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was copied into the model, every epoch trained on NaN, and the end blamed the training for
    diverging; now the loader's own check refuses it in one line naming the file and the tensor."""
    from own_clips import write_class_folders

    from streamd.cli import main
    from training.init_from import InitError

    labels = ["crying_baby", "dog", "rooster"]
    ckpt, name = _nan_checkpoint(tmp_path, labels)
    refusal = f"init checkpoint {ckpt}: weight {name} holds NaN or infinite values"
    with pytest.raises(InitError, match=f"^{refusal}"):  # every training path loads it so: TOML, --data
        load_init_weights(_fresh("resnet_cnn", CNN, labels), ckpt, labels)
    config = _config(tmp_path, esc50_root, "")
    with pytest.raises(ExperimentConfigError, match=f"^{config}: model.init: {refusal}"):
        load_experiment(config, init=str(ckpt))  # a config names it: refused when it is read
    assert not (tmp_path / "runs").exists()
    data = write_class_folders(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--init", str(ckpt), "--epochs", "1", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"streamd: error: {refusal}") and captured.err.count("\n") == 1
    assert "features:" not in captured.out and not out.exists() and not (tmp_path / ".cache").exists()


def test_the_init_checkpoint_is_loaded_and_checked_once_per_process(
    tmp_path: Path, esc50_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train --data``'s first look, the config's settings (``evaluate --config`` too) and the weights
    copied into the run's model each built the model and checked every weight: the full check runs once
    per file, the weights copied are still the file's, and a changed file is checked again."""
    import os

    from training import init_from
    from training.own_init import init_info

    loads: list[Path] = []
    real = init_from.load_checkpoint
    monkeypatch.setattr(init_from, "load_checkpoint", lambda path: loads.append(Path(path)) or real(path))
    labels = ["a", "b", "c"]
    ckpt = _checkpoint(tmp_path / "init.safetensors", "resnet_cnn", CNN, labels, frames=200)
    assert init_info(str(ckpt), None).arch == "resnet_cnn"
    exp = load_experiment(_config(tmp_path, esc50_root, ""), init=str(ckpt))
    model = _fresh("resnet_cnn", CNN, labels)
    assert "head kept (same labels)" in load_init_weights(model, exp.init, labels)
    assert loads == [ckpt]
    theirs = _states(ckpt)
    for key, value in model.state_dict().items():
        assert torch.equal(value, theirs[key]), key
    stat = ckpt.stat()
    os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # written again since
    load_init_weights(_fresh("resnet_cnn", CNN, labels), ckpt, labels)
    assert loads == [ckpt, ckpt]
