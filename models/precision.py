"""Which numeric precision a loaded model runs in: ``--precision auto|fp32|bf16|int8`` of every command,
and the precision training's held-out reports are scored in (``auto``).

``auto`` (the default) picks bf16 where the hardware runs it natively — a CPU with ``avx512_bf16`` or
``amx_bf16`` (from ``/proc/cpuinfo``), or a CUDA device with bf16 support — and fp32 elsewhere. A
checkpoint may carry its measured bf16 top-1 agreement with fp32 (``extra.bf16_agreement``, written by
``models.bf16_agreement``); ``auto`` keeps fp32 for a model whose agreement is below 99 %.
Recurrent models follow the same rule: their served form runs the Mamba mixers in float32 even under
autocast (``models.mamba``; one token per stream and step, where casts cost more than bf16 saves), so
bf16 speeds up the convolutional stem, the bulk of a catch-up chunk (``scripts/bench_recurrent_step.py``),
and a chunk still equals step-by-step (<= 1e-4; with bf16 mixers the two differed by 0.008 in probability).
The explicit choices are taken as asked (``int8``: dynamic int8 linear layers, CPU only).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from models.bf16 import cpu_flags, native_bf16

__all__ = ["PRECISIONS", "PrecisionChoice", "choose_precision", "cpu_flags", "native_bf16"]

PRECISIONS = ("auto", "fp32", "bf16", "int8")
MIN_BF16_AGREEMENT = 0.99


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a model runs in and why (shown in the status message and the dashboard)."""

    precision: str  # fp32 | bf16 | int8
    reason: str

    def describe(self) -> str:
        return f"{self.precision} ({self.reason})"


def choose_precision(
    requested: str,
    device_type: str,
    extra: dict[str, Any],
    flags: Iterable[str] | None = None,
) -> PrecisionChoice:
    """Resolve ``requested`` for a model on ``device_type`` whose checkpoint metadata is ``extra``."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested == "int8" and device_type != "cpu":
        raise ValueError("--precision int8 runs on the CPU only (use --compute cpu)")
    if requested != "auto":
        return PrecisionChoice(requested, "asked for")
    native, why = native_bf16(device_type, flags)
    if not native:
        return PrecisionChoice("fp32", f"auto: {why}")
    agreement = extra.get("bf16_agreement")
    if isinstance(agreement, (int, float)) and agreement < MIN_BF16_AGREEMENT:
        return PrecisionChoice(
            "fp32", f"auto: the model agrees with fp32 on {100 * agreement:.1f} % of windows in bf16"
        )
    return PrecisionChoice("bf16", f"auto: {why}")
