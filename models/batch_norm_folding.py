"""Batch norm folded into the convolution before it, for inference: ``bn(conv(x))`` as one conv.

In eval mode a ``BatchNorm2d`` is a per-channel affine map, ``y = (x - mean) / sqrt(var + eps) * γ + β``,
so after a convolution it can live in the convolution's weights and bias (per output channel
``w' = w · s``, ``b' = (b - mean) · s + β`` with ``s = γ / sqrt(var + eps)``), saving one pass over the
activations. The result equals the unfolded model to float round-off; training needs the unfolded one.
"""

from __future__ import annotations

import itertools

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution equal to ``bn(conv(x))``; both must be in eval mode (the running statistics are
    what is folded). torch's own fusion (``fuse_conv_bn_eval``: a copy of the conv, no random
    initialisation) keeps the weights' memory format."""
    if conv.training or bn.training:
        raise ValueError("batch norms are folded for inference only: put the model in eval mode first")
    return fuse_conv_bn_eval(conv, bn)


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
