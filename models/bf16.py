"""bf16 inference through autocast, for any model, and its error against fp32.

Under ``torch.autocast(device, dtype=torch.bfloat16)`` linear layers, convolutions and attention run in
bf16 while weights stay fp32; the Mamba scans cast themselves back to fp32 (``models.mamba``). Logits come
back as fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")


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


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str]:
    """The CPU feature flags the kernel reports (empty where there is no ``/proc/cpuinfo``)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def native_bf16(device_type: str, flags: Iterable[str] | None = None) -> tuple[bool, str]:
    """Whether ``device_type`` runs bf16 natively, and the evidence (a CPU flag or the CUDA answer)."""
    if device_type == "cuda":
        ok = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        return ok, "CUDA with bf16" if ok else "CUDA without bf16"
    found = set(cpu_flags() if flags is None else flags)
    for flag in NATIVE_BF16_CPU_FLAGS:
        if flag in found:
            return True, f"CPU has {flag}"
    return False, "CPU without native bf16"


def resolve_auto(precision: str, device_type: str = "cpu") -> str:
    """``auto`` -> ``bf16`` where ``device_type`` runs bf16 natively, else ``fp32``; others unchanged."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device_type)[0] else "fp32"
