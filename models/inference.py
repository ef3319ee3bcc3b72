"""A loaded model made ready to serve in a precision: the fast AST path, or int8 linear layers."""

from __future__ import annotations

from torch import nn


def prepare_for_inference(model: nn.Module, precision: str) -> nn.Module:
    """``model`` (eval mode) for serving in ``precision`` (fp32 | bf16 | int8).

    An AST gets its fast path (``models.ast_fast.FastAST``, the same result); a model with
    ``optimise_for_inference`` (the CNN, the conv-stem recurrent model: batch norms folded into the
    convolutions, channels-last layouts) gets its inference form, in place (the same result to float
    round-off); then fp32 and bf16 (bf16 through the caller's autocast) are served as they are and int8
    with int8 linear layers."""
    from models.ast import AST

    if isinstance(model, AST):
        from models.ast_fast import FastAST

        return FastAST(model, precision)
    optimise = getattr(model, "optimise_for_inference", None)
    if callable(optimise):
        optimise()
    if precision == "int8":
        from models.quantize import quantize_int8

        return quantize_int8(model)
    return model
