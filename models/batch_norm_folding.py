"""Batch norm folded into the convolution before it, for inference: ``bn(conv(x))`` as one conv.

In eval mode a ``BatchNorm2d`` is a per-channel affine map, ``y = (x - mean) / sqrt(var + eps) * γ + β``,
so after a convolution it can live in the convolution's weights and bias (per output channel
``w' = w · s``, ``b' = (b - mean) · s + β`` with ``s = γ / sqrt(var + eps)``), saving one pass over the
activations. The result equals the unfolded model to float round-off; training needs the unfolded one.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn


@torch.no_grad()
def folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution equal to ``bn(conv(x))`` with ``bn`` in eval mode (its running statistics)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("a batch norm without running statistics cannot be folded")
    scale = bn.running_var.add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(conv.weight.device)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    bias = shift if conv.bias is None else conv.bias * scale + shift
    assert fused.bias is not None
    fused.bias.copy_(bias)
    if conv.weight.is_contiguous(memory_format=torch.channels_last):
        fused.to(memory_format=torch.channels_last)
    return fused.eval()


def fold_sequential_batch_norms(module: nn.Module) -> int:
    """Fold every ``Conv2d`` directly followed by a ``BatchNorm2d`` inside an ``nn.Sequential`` of
    ``module`` (the batch norm becomes ``Identity``); returns how many were folded."""
    folded = 0
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for first, second in itertools.pairwise(names):
            conv, bn = seq._modules[first], seq._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq._modules[first] = folded_conv(conv, bn)
                seq._modules[second] = nn.Identity()
                folded += 1
    return folded
