"""The AST's convolutional stem (``ASTConfig.stem = "conv"``) on real ESC-50 windows: its token grid, the
fast path against the plain forward, a checkpoint round trip and that it learns."""

from __future__ import annotations

import pytest
import torch
from model_audio import esc50_normalization
from torch import nn

from models.ast import AST, ASTConfig, ConvPatchEmbed
from models.ast_fast import FastAST
from models.checkpoint import save_checkpoint
from models.common import ModelInfo
from streamd.model_loading import load_model

SMALL = {"size": "custom", "embed_dim": 48, "depth": 2, "num_heads": 4, "stem_channels": 8}


def conv_ast(num_mel_bins: int = 128, target_frames: int = 498, seed: int = 0, **extra) -> AST:
    """A small conv-stem AST whose batch norms hold running statistics of real-looking input."""
    torch.manual_seed(seed)
    config = ASTConfig(
        num_classes=5,
        num_mel_bins=num_mel_bins,
        target_frames=target_frames,
        fstride=16,
        tstride=16,
        stem="conv",
    )
    for key, value in (SMALL | extra).items():
        setattr(config, key, value)
    config.__post_init__()
    model = AST(config).train()
    with torch.no_grad():  # running statistics away from their initial 0 / 1
        for _ in range(3):
            model(torch.randn(4, target_frames, num_mel_bins) * 1.5 + 0.3)
    return model.eval()


@pytest.mark.parametrize(
    ("bins", "frames", "grid"), [(128, 498, (8, 32)), (64, 498, (4, 32)), (64, 16, (4, 1))]
)
def test_one_token_per_16_by_16_area_rounded_up(bins, frames, grid):
    config = ASTConfig(num_mel_bins=bins, target_frames=frames, fstride=16, tstride=16, stem="conv")
    assert config.grid(frames) == grid
    model = AST(config)
    assert model.pos_embed.shape[1] == 2 + grid[0] * grid[1]
    tokens = model.patch_embed(torch.randn(2, frames, bins))
    assert tokens.shape == (2, grid[0] * grid[1], config.embed_dim)


def test_every_window_length_runs(real_windows):
    model = conv_ast()
    with torch.no_grad():
        for frames in (16, 17, 100, 498):
            assert model(real_windows[:, :frames]).shape == (4, 5)
        longer = torch.cat([real_windows, real_windows], dim=1)[:, :700]  # the grid resized, not cut
        assert model(longer).shape == (4, 5)
    with pytest.raises(ValueError, match="at least 16 frames"):
        model(real_windows[:, :15])


def test_config_errors():
    with pytest.raises(ValueError, match="16 apart"):
        ASTConfig(stem="conv", fstride=10, tstride=10)
    with pytest.raises(ValueError, match="stem must be one of"):
        ASTConfig(stem="resnet")
    with pytest.raises(ValueError, match="stem_channels"):
        ASTConfig(stem="conv", fstride=16, tstride=16, stem_channels=0)
    assert isinstance(AST(ASTConfig(fstride=16, tstride=16, stem="conv")).patch_embed, ConvPatchEmbed)


@torch.inference_mode()
def test_fast_path_folds_the_stem_and_equals_the_reference(real_windows):
    model = conv_ast()
    x = real_windows[:, :498]
    reference = model(x)
    fast = FastAST(model, "fp32")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.patch_embed.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.patch_embed.modules())  # the reference is kept
    assert (fast(x) - reference).abs().max() <= 1e-4
    probs = torch.softmax(reference, -1)
    for precision in ("bf16", "int8"):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            low = FastAST(model, precision)(x).float()
        assert (torch.softmax(low, -1) - probs).abs().max() <= 0.02, precision


def test_checkpoint_round_trip_serves_the_conv_stem(tmp_path, real_windows):
    model = conv_ast(num_mel_bins=128)
    config = {"num_classes": 5, "fstride": 16, "tstride": 16, "stem": "conv", "target_frames": 498} | SMALL
    info = ModelInfo("ast", config, [f"c{i}" for i in range(5)])
    info.normalization = esc50_normalization()
    path = save_checkpoint(tmp_path / "ast_conv.safetensors", model, info)
    loaded = load_model(path, compute="cpu", precision="fp32")
    assert isinstance(loaded.model, FastAST) and loaded.model.cfg.stem == "conv"
    with torch.inference_mode():
        x = real_windows[:2]
        assert (loaded.model(x) - model(x)).abs().max() <= 1e-4


def test_it_learns_a_few_real_windows(real_windows):
    model = conv_ast().train()
    labels = torch.arange(4)
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        loss = nn.functional.cross_entropy(model(real_windows), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_drop_path_only_in_training(real_windows):
    """Stochastic depth: rates rise linearly to ``drop_path`` at the last block; at inference the model
    equals the same weights without it, in training a sample's branches are dropped at random."""
    plain = conv_ast(seed=1)
    dropped = conv_ast(seed=1, drop_path=0.5)
    assert [b.drop_path for b in dropped.blocks] == [0.0, 0.5]
    dropped.load_state_dict(plain.state_dict())
    x = real_windows[:, :200]
    with torch.no_grad():
        assert torch.equal(dropped.eval()(x), plain(x))
        dropped.train()
        torch.manual_seed(0)
        outputs = [dropped(x) for _ in range(6)]
    assert any(not torch.equal(outputs[0], other) for other in outputs[1:])
    with pytest.raises(ValueError, match="drop_path"):
        ASTConfig(drop_path=1.0)
