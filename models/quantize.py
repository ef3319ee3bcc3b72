"""``--precision int8``: torch's dynamic int8 quantisation of a model's linear layers (CPU only).

Weights of every ``nn.Linear`` are stored as int8 (one scale per output channel); activations are
quantised on the fly per call and the matrix products run in int8 (fbgemm / onednn). Everything else
stays fp32. The input model is left as it was; a quantised copy is returned.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with dynamic int8 linear layers, in eval mode."""
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        spec = {nn.Linear: per_channel_dynamic_qconfig}
        return quantize_dynamic(model.eval(), spec, dtype=torch.qint8, inplace=False).eval()


def is_quantized_linear(module: nn.Module) -> bool:
    """Whether ``module`` is a dynamically quantised linear layer."""
    return type(module).__module__.startswith("torch.ao.nn.quantized")
