"""ImageNet ViT/DeiT checkpoints -> an AST initialisation (Gong et al. 2021, the "ImageNet pretraining" of
AST; YuanGongND/ast ``ast_models.py``).

Two layouts are read:

- timm's (``.pth`` or ``.safetensors``): ``cls_token``, ``dist_token`` (DeiT distilled only),
  ``pos_embed``, ``patch_embed.proj.*``, ``blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``,
  ``norm``; the ImageNet heads (``head``, ``head_dist``, ``fc_norm``, ``pre_logits``) are dropped;
- Hugging Face ``ViTModel`` / ``DeiTModel`` (and their classification wrappers) directories: keys under
  ``vit.`` or ``deit.`` (``embeddings.{cls_token, distillation_token, position_embeddings,
  patch_embeddings.projection}``, the per-layer names ``models.convert_ast`` reads, ``layernorm``).

The rule, as AST's code applies it:

- the patch projection's three input channels become one by **summing** them (the AST paper's text says
  "average"; its code sums: ``torch.sum(weight, dim=1).unsqueeze(1)``), the bias kept; its stride becomes
  ``(fstride, tstride)``;
- the positional embeddings of the image patches (without the token positions) form the image grid
  (14×14 at 224 px, 24×24 at 384 px); its time axis is cut from the middle when the audio grid is
  narrower and resized bilinearly otherwise, then its frequency axis the same way; the two token
  positions go back in front;
- the cls and distillation tokens are kept; an image model without a distillation token (ViT) gets a copy
  of its cls token (and of its position) in that place;
- the head (LayerNorm + Linear) is freshly initialised: it is re-initialised for the new labels anyway.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from models.ast import AST, PATCH, ASTConfig, adapt_time_grid
from models.convert_ast import HF_PREFIX, build, config_from_state, from_hf
from models.weight_files import load_torch_state, read_hf_weights, read_json_object

_TIMM_DROPPED = ("head.", "head_dist.", "fc_norm.", "pre_logits.")
_HF_DROPPED = (
    "classifier.",
    "cls_classifier.",
    "distillation_classifier.",
    "pooler.",
    "embeddings.mask_token",
)
HF_TYPES = ("vit", "deit")


def is_timm_layout(state: Mapping[str, torch.Tensor]) -> bool:
    """An image transformer in timm's layout: a 3-channel patch projection and ``blocks.N``."""
    weight = state.get("patch_embed.proj.weight")
    return (
        weight is not None and weight.ndim == 4 and weight.shape[1] == 3 and "blocks.0.norm1.weight" in state
    )


def from_timm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm keys -> ``AST`` keys (the same names), ImageNet heads dropped."""
    return {k: v for k, v in state.items() if not k.startswith(_TIMM_DROPPED)}


def from_hf_image(state: Mapping[str, torch.Tensor], model_type: str) -> dict[str, torch.Tensor]:
    """Hugging Face ViT/DeiT keys -> ``AST`` keys (through ``models.convert_ast.from_hf``)."""
    prefix = f"{model_type}."
    renamed = {}
    for key, value in state.items():
        name = key.removeprefix(prefix)
        if name.startswith(_HF_DROPPED):
            continue
        renamed[HF_PREFIX + name] = value
    return from_hf(renamed)


def read_image_model(src: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """``(state in AST names, Hugging Face config or {})`` of an image ViT/DeiT; None if ``src`` is not."""
    src = Path(src)
    if src.is_dir():
        config_path = src / "config.json"
        hf = read_json_object(config_path) if config_path.is_file() else {}
        model_type = hf.get("model_type")
        if model_type not in HF_TYPES:
            return None
        return from_hf_image(read_hf_weights(src), model_type), hf
    if src.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(src))
        except (SafetensorError, OSError) as exc:
            raise ValueError(f"{src}: not a readable safetensors file ({exc})") from None
    else:
        state = load_torch_state(src)
    return (from_timm(state), {}) if is_timm_layout(state) else None


def sum_rgb(weight: torch.Tensor) -> torch.Tensor:
    """Patch projection ``(D, 3, 16, 16)`` -> ``(D, 1, 16, 16)``: the sum over the colour channels."""
    return weight.sum(dim=1, keepdim=True)


def audio_positions(pos: torch.Tensor, tokens: int, grid: tuple[int, int]) -> torch.Tensor:
    """Image positions ``(1, tokens + g*g, D)`` -> AST positions ``(1, 2 + f*t, D)`` for ``grid = (f, t)``."""
    side = math.isqrt(pos.shape[1] - tokens)
    if side * side != pos.shape[1] - tokens:
        raise ValueError(f"{pos.shape[1] - tokens} image positions do not form a square grid")
    dim = pos.shape[-1]
    image = pos[:, tokens:].transpose(1, 2).reshape(1, dim, side, side)  # (1, D, rows, columns)
    image = adapt_time_grid(image, grid[1])  # time: the columns
    image = adapt_time_grid(image.transpose(2, 3), grid[0]).transpose(2, 3)  # frequency: the rows
    prefix = pos[:, :tokens] if tokens == 2 else pos[:, :1].repeat(1, 2, 1)
    return torch.cat([prefix, image.flatten(2).transpose(1, 2)], dim=1)


def to_ast(
    state: Mapping[str, torch.Tensor],
    hf: Mapping[str, Any],
    num_mel_bins: int,
    target_frames: int,
    fstride: int,
    tstride: int,
) -> AST:
    """An ``AST`` holding the image backbone by the rule of the module docstring, with a fresh head."""
    for key in ("cls_token", "pos_embed", "patch_embed.proj.weight", "norm.weight"):
        if key not in state:
            raise ValueError(f"not an image ViT/DeiT state dict: no {key!r}")
    weight = state["patch_embed.proj.weight"]
    if tuple(weight.shape[-2:]) != (PATCH, PATCH):
        raise ValueError(f"only {PATCH}x{PATCH} patches are supported, got {tuple(weight.shape[-2:])}")
    geometry = ASTConfig(
        num_mel_bins=num_mel_bins, target_frames=target_frames, fstride=fstride, tstride=tstride
    )
    converted = dict(state)
    tokens = 2 if "dist_token" in state else 1
    if tokens == 1:
        converted["dist_token"] = state["cls_token"].clone()
    converted["patch_embed.proj.weight"] = sum_rgb(weight)
    converted["pos_embed"] = audio_positions(state["pos_embed"], tokens, geometry.grid(target_frames))
    converted["head.weight"] = torch.zeros(1, state["cls_token"].shape[-1])  # one class; replaced below
    heads = hf.get("num_attention_heads")  # timm files do not say: 64-dim heads, as DeiT/ViT
    eps = float(hf.get("layer_norm_eps", 1e-6))
    config = config_from_state(converted, num_mel_bins, target_frames, fstride, tstride, heads, eps)
    fresh = AST(config).state_dict()
    converted.update({k: v for k, v in fresh.items() if k.startswith(("head.", "head_norm."))})
    return build(config, converted)
