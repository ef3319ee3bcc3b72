"""The residual CNN's channels-last fast path against the plain NCHW layout."""

from __future__ import annotations

import copy

import torch

from models import build_model
from models.checkpoint import load_checkpoint, save_checkpoint
from models.common import FeatureConfig, ModelInfo

CONFIG = {"num_classes": 7, "num_mel_bins": 32, "channels": [8, 16, 16, 32]}


def _pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    fast = build_model("resnet_cnn", CONFIG).eval()
    plain = copy.deepcopy(fast).use_channels_last(False)
    return fast, plain


def test_channels_last_is_the_default_and_matches_nchw() -> None:
    fast, plain = _pair()
    assert fast.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert plain.stem[0].weight.is_contiguous()
    x = torch.randn(3, 203, 32)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), plain(x), atol=1e-5, rtol=1e-4)


def test_channels_last_gradients_match_nchw() -> None:
    fast, plain = _pair()
    fast.train()
    plain.train()
    x = torch.randn(4, 120, 32)
    for model in (fast, plain):
        torch.manual_seed(1)  # the same dropout masks
        model(x).square().sum().backward()
    for (name, a), b in zip(fast.named_parameters(), plain.parameters(), strict=True):
        # float sums in another order, through batch norm: agree to ~1e-3 of the gradient's scale
        scale = float(b.grad.abs().max())
        assert float((a.grad - b.grad).abs().max()) <= 1e-2 * scale, name


def test_checkpoint_round_trip_keeps_the_fast_layout(tmp_path) -> None:
    fast, _ = _pair()
    info = ModelInfo("resnet_cnn", CONFIG, [f"c{i}" for i in range(7)], FeatureConfig(num_mel_bins=32))
    path = save_checkpoint(tmp_path / "m.safetensors", fast, info)
    loaded, _ = load_checkpoint(path)
    assert loaded.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 150, 32)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.eval()(x), fast(x))
