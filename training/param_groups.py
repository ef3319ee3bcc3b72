"""Optimiser parameter groups for fine-tuning: head vs backbone learning rates, layer-wise decay, freezing.

Every streamd model ends in a classifier called ``head`` (AST adds the LayerNorm ``head_norm`` in front of
it); everything else is the backbone. Each group carries ``lr_scale``: the loop multiplies its scheduled
learning rate by it. With ``backbone_lr_scale`` s the backbone learns at s × the head's rate; with
``layer_decay`` d < 1 (transformers and Mamba stacks: ``blocks.N`` / ``layers.N``), block N of a depth-L
model learns at d^(L - N) and the embeddings (patch projection, tokens, positions) at d^(L + 1) of the
rate, the final norm and the head at 1 (BEiT's layer-wise decay, as the AST/AuM fine-tuning recipes use).
Freezing turns the backbone's gradients off and holds its normalisation statistics still.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

HEAD_PREFIXES = ("head.", "head_norm.")
_LAYER = re.compile(r"^(?:blocks|layers)\.(\d+)\.")
_EMBEDDINGS = ("patch_embed.", "cls_token", "dist_token", "pos_embed", "embed.")


def is_head(name: str) -> bool:
    """Whether parameter ``name`` belongs to the classifier head."""
    return name.startswith(HEAD_PREFIXES)


def stack_depth(model: nn.Module) -> int:
    """How many numbered blocks (``blocks.N`` / ``layers.N``) the model stacks; 0: none."""
    layers = {int(m.group(1)) for name, _ in model.named_parameters() if (m := _LAYER.match(name))}
    return max(layers) + 1 if layers else 0


def layer_scale(name: str, depth: int, layer_decay: float) -> float:
    """Layer-wise decay factor of parameter ``name`` in a model with ``depth`` blocks."""
    if layer_decay == 1.0 or depth == 0 or is_head(name):
        return 1.0
    match = _LAYER.match(name)
    if match:
        return layer_decay ** (depth - int(match.group(1)))
    if name.startswith(_EMBEDDINGS):
        return layer_decay ** (depth + 1)
    return 1.0  # final norm


def _no_decay(name: str, p: nn.Parameter) -> bool:
    """No weight decay on biases, norms, embeddings-like 1-D tensors and tokens."""
    return p.ndim <= 1 or name.endswith(("token", "pos_embed"))


def param_groups(
    model: nn.Module, weight_decay: float, backbone_lr_scale: float = 1.0, layer_decay: float = 1.0
) -> list[dict[str, Any]]:
    """AdamW groups by (weight decay or not, lr scale), decayed first; each group has ``lr_scale``."""
    depth = stack_depth(model)
    groups: dict[tuple[bool, float], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = layer_scale(name, depth, layer_decay) * (1.0 if is_head(name) else backbone_lr_scale)
        decay = not _no_decay(name, p)
        group = groups.setdefault(
            (decay, scale),
            {"params": [], "weight_decay": weight_decay if decay else 0.0, "lr_scale": scale},
        )
        group["params"].append(p)
    return [groups[key] for key in sorted(groups, key=lambda k: (not k[0], -k[1]))]


def set_backbone_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze (or release) every parameter outside the head; frozen batch norms keep their statistics.

    Call it after ``model.train()``: it puts the backbone's batch-norm layers back into eval mode.
    """
    for name, p in model.named_parameters():
        if not is_head(name):
            p.requires_grad_(not frozen)
    if frozen:
        for name, module in model.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and not is_head(name + "."):
                module.eval()
