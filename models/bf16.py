"""bf16 inference through autocast, for any model, and its error against fp32.

Under ``torch.autocast(device, dtype=torch.bfloat16)`` linear layers, convolutions and attention run in
bf16 while weights stay fp32; the Mamba scans cast themselves back to fp32 (``models.mamba``). Logits come
back as fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn


@contextlib.contextmanager
def bf16_autocast(device_type: str = "cpu", enabled: bool = True) -> Iterator[None]:
    """Autocast to bf16 on ``device_type`` (a no-op when ``enabled`` is False)."""
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=enabled):
        yield


@torch.no_grad()
def logits_bf16(model: nn.Module, fbank: torch.Tensor) -> torch.Tensor:
    """``model(fbank)`` under bf16 autocast, as fp32."""
    with bf16_autocast(fbank.device.type):
        return model(fbank).float()


@dataclass(frozen=True)
class Bf16Error:
    """bf16 vs fp32 logits on the same input."""

    max_abs: float  # largest absolute logit difference
    rel: float  # max_abs / largest absolute fp32 logit
    top1_agreement: float  # fraction of rows whose arg-max class is the same


@torch.no_grad()
def bf16_error(model: nn.Module, fbank: torch.Tensor) -> Bf16Error:
    """Compare ``model`` in bf16 autocast against fp32 on ``fbank``."""
    reference = model(fbank).float()
    low = logits_bf16(model, fbank)
    diff = float((low - reference).abs().max())
    scale = float(reference.abs().max()) or 1.0
    agree = float((low.argmax(-1) == reference.argmax(-1)).float().mean())
    return Bf16Error(max_abs=diff, rel=diff / scale, top1_agreement=agree)
