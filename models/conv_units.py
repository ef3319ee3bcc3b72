"""The small convolutional units that the conv stems of the recurrent Mamba and the AST are built from."""

from __future__ import annotations

import torch
from torch import nn


class MemoryOrderGELU(nn.GELU):
    """GELU over a channels-last tensor in its memory order (as ``(N, H, W, C)``): the same values, but
    torch's GELU on a channels-last 4-d tensor measured about twice as slow as on a contiguous one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return super().forward(x)


def conv_unit(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3×3 convolution (padding 1, no bias), batch norm, GELU: ``(N, cin, H, W)`` -> ``(N, cout, ⌈H/s⌉,
    ⌈W/s⌉)``. The batch norm folds into the convolution for inference (``models.batch_norm_folding``)."""
    conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), MemoryOrderGELU())
