"""Models in their inference form (batch norms folded into convolutions, ``models.batch_norm_folding``;
channels-last stems) equal the plain models: one conv + batch norm, and the shipped CNN and conv-stem
recurrent model on real audio."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from model_audio import clip_paths, fbank_of, load_wave
from torch import nn

from audio_core.shipped_models import shipped_model_path
from models.batch_norm_folding import fold_sequential_batch_norms, folded_conv
from models.checkpoint import load_checkpoint
from models.inference import prepare_for_inference


def _trained_bn(channels: int, seed: int) -> nn.BatchNorm2d:
    gen = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels)
    bn.running_mean.copy_(torch.randn(channels, generator=gen))
    bn.running_var.copy_(torch.rand(channels, generator=gen) + 0.1)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(channels, generator=gen))
        bn.bias.copy_(torch.randn(channels, generator=gen))
    return bn.eval()


@pytest.mark.parametrize(
    "stride, bias, channels_last", [(1, False, False), (2, True, False), (1, False, True)]
)
def test_a_folded_conv_equals_conv_then_batch_norm(stride: int, bias: bool, channels_last: bool) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, stride=stride, padding=1, bias=bias).eval()
    bn = _trained_bn(8, 1)
    x = torch.randn(2, 3, 17, 12)
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    fused = folded_conv(conv, bn)
    assert fused.weight.is_contiguous(memory_format=torch.channels_last) == channels_last
    with torch.no_grad():
        torch.testing.assert_close(fused(x), bn(conv(x)), atol=1e-5, rtol=1e-5)
    seq = nn.Sequential(copy.deepcopy(conv), copy.deepcopy(bn), nn.ReLU(), nn.Conv2d(8, 4, 1), nn.ReLU())
    reference = copy.deepcopy(seq)
    assert fold_sequential_batch_norms(seq) == 1 and isinstance(seq[1], nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(seq(x), reference(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["default", "recurrent"])
def test_shipped_models_folded_for_inference_equal_the_plain_ones(name: str, esc50_root) -> None:
    """``prepare_for_inference`` folds the batch norms; on real clips the logits stay within 1e-4 (fp32),
    and the recurrent model's chunked catch-up and single steps agree with the plain model's."""
    plain, info = load_checkpoint(shipped_model_path(name))
    served = prepare_for_inference(copy.deepcopy(plain), "fp32")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in served.modules() if _after_conv(served, m))
    banks = torch.stack([fbank_of(load_wave(p), info.features) for p in clip_paths(3)])
    x = info.normalization.apply(banks)
    with torch.inference_mode():
        if name == "recurrent":
            state = plain.init_state(3)
            a, _ = plain.forward_chunk(x[:, :480], state)
            b, new = served.forward_chunk(x[:, :480], state)
            torch.testing.assert_close(b, a, atol=1e-4, rtol=0)
            step_a, _ = plain.step(x[:, 480:496], new)
            step_b, _ = served.step(x[:, 480:496], new)
            torch.testing.assert_close(step_b, step_a, atol=1e-4, rtol=0)
        else:
            torch.testing.assert_close(served(x), plain(x), atol=1e-4, rtol=0)


def _after_conv(model: nn.Module, module: nn.Module) -> bool:
    """Whether ``module`` directly follows a convolution in a Sequential of ``model``."""
    for seq in (m for m in model.modules() if isinstance(m, nn.Sequential)):
        items = list(seq)
        for prev, cur in itertools.pairwise(items):
            if cur is module and isinstance(prev, nn.Conv2d):
                return True
    return False


def test_folding_is_for_eval_mode_only_and_leaves_the_random_state() -> None:
    conv, bn = nn.Conv2d(2, 4, 3).eval(), _trained_bn(4, 2)
    state = torch.get_rng_state()
    folded_conv(conv, bn)
    assert torch.equal(torch.get_rng_state(), state)  # no random initialisation on loading a model
    with pytest.raises(ValueError, match="eval mode"):
        folded_conv(conv.train(), bn)
