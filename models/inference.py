"""A loaded model made ready to serve in a precision: the fast AST path, or int8 linear layers."""

from __future__ import annotations

from torch import nn


def prepare_for_inference(model: nn.Module, precision: str) -> nn.Module:
    """``model`` (eval mode) for serving in ``precision`` (fp32 | bf16 | int8).

    An AST gets its fast path (``models.ast_fast.FastAST``, the same result); other models are returned
    as they are for fp32 and bf16 (bf16 through the caller's autocast) and with int8 linear layers for
    int8."""
    from models.ast import AST

    if isinstance(model, AST):
        from models.ast_fast import FastAST

        return FastAST(model, precision)
    if precision == "int8":
        from models.quantize import quantize_int8

        return quantize_int8(model)
    return model
