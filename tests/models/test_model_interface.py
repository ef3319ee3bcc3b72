"""Every architecture: built by name, the common interface, checkpoint round trips, bf16 error, and the
rule that ``models/`` imports nothing from ``streamd/`` or ``training/``."""

from __future__ import annotations

import ast as pyast
import json
from pathlib import Path

import pytest
import torch
from model_audio import esc50_normalization

from models import FeatureConfig, ModelInfo, WindowedClassifier, build_model
from models.bf16 import bf16_error
from models.checkpoint import load_checkpoint, save_checkpoint
from models.registry import config_to_dict

SMALL = {
    "piczak_cnn": {"num_classes": 5, "channels": 8, "hidden": 64},
    "resnet_cnn": {"num_classes": 5, "channels": [8, 16, 16, 32]},
    "ast": {
        "num_classes": 5,
        "size": "custom",
        "embed_dim": 64,
        "depth": 2,
        "num_heads": 4,
        "target_frames": 512,
    },
    "aum": {"num_classes": 5, "size": "custom", "embed_dim": 32, "depth": 2, "target_frames": 512},
    "streaming_mamba": {"num_classes": 5, "d_model": 48, "n_layers": 2},
}


def trained_looking(arch: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(arch, SMALL[arch])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_common_interface(arch, real_windows):
    model = trained_looking(arch)
    assert isinstance(model, WindowedClassifier) and model.num_classes == 5
    with torch.no_grad():
        assert model(real_windows).shape == (4, 5)
    if model.recurrent:
        state = model.init_state(4)
        logits, state = model.step(real_windows[:, :16], state)
        assert logits.shape == (4, 5) and all(isinstance(v, torch.Tensor) for v in state.values())


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_checkpoint_round_trip(arch, tmp_path, real_windows):
    model = trained_looking(arch, seed=1)
    info = ModelInfo(
        arch=arch,
        config=config_to_dict(model.cfg),
        labels=[f"label {i}" for i in range(5)],
        features=FeatureConfig(),
        normalization=esc50_normalization(),
        extra={"note": "round trip"},
    )
    path = save_checkpoint(tmp_path / f"{arch}.safetensors", model, info)
    loaded, loaded_info = load_checkpoint(path)
    assert loaded_info.to_dict() == json.loads(json.dumps(info.to_dict()))  # tuples come back as lists
    with torch.no_grad():
        torch.testing.assert_close(loaded(real_windows), model(real_windows), rtol=0, atol=0)


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_bf16_autocast_error_is_small(arch, real_windows):
    error = bf16_error(trained_looking(arch, seed=2), real_windows)
    assert error.max_abs > 0 and error.rel < 0.05, error


def test_models_package_imports_nothing_from_streamd_or_training():
    package = Path(__file__).resolve().parents[2] / "models"
    for path in sorted(package.glob("*.py")):
        for node in pyast.walk(pyast.parse(path.read_text())):
            names = []
            if isinstance(node, pyast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, pyast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ("streamd", "training"), f"{path.name} imports {name}"
