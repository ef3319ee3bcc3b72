"""Where a model runs, for every command that loads or trains one: ``auto`` (CUDA when present), ``cpu``
or ``cuda``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a device is resolved: the command line parses without it
    import torch
    from torch import nn

COMPUTES = ("auto", "cpu", "cuda")


class ComputeError(ValueError):
    """A compute choice that cannot be honoured (``cuda`` without a CUDA device, an unknown name)."""


def resolve_device(compute: str, option: str = "--compute") -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without it is a ``ComputeError`` naming ``option``."""
    import torch

    if compute == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if compute not in ("cpu", "cuda"):
        raise ComputeError(f"{option} must be one of {', '.join(COMPUTES)}, got {compute!r}")
    if compute == "cuda" and not torch.cuda.is_available():
        raise ComputeError(f"{option} cuda: no CUDA device is available")
    return torch.device(compute)


def device_of(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter or buffer (CPU for one that has none)."""
    import torch

    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """``cpu`` or ``cuda (NVIDIA H100 80GB HBM3)``: for a line that says where work runs."""
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type
