"""Audio-Mamba (kaistmm/Audio-Mamba-AuM) ``.pth`` state dicts -> ``models.aum.AuM``.

AuM saves ``model.state_dict()``, with a ``module.`` prefix when trained under DataParallel/accelerate.
``models.aum.AuM`` uses AuM's own key names, so conversion strips the prefix and checks the keys. The
config is read from tensor shapes: width (``cls_token``), depth (``layers.i``), variant (``A_b_log``
alone: Fo-Bi; with ``conv1d_b``: Bi-Bi; neither: Fo-Fo), d_state, d_conv, expand, dt_rank and classes;
strides and window length come from arguments or AuM's recipes (stride 16; 1024, 512 or 128 frames).
Every problem is a ``ValueError`` naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from models.aum import SIZES, AuM, AuMConfig
from models.checkpoint import load_problem
from models.convert_ast import infer_geometry


def strip_module_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("module."): v for k, v in state.items()}


def is_aum_layout(state: Mapping[str, torch.Tensor]) -> bool:
    keys = strip_module_prefix(state)
    return "pos_embed.pos_embed" in keys and any(k.startswith("layers.0.mixer.") for k in keys)


def _depth(state: Mapping[str, torch.Tensor]) -> int:
    layers = {int(m.group(1)) for k in state if (m := re.match(r"layers\.(\d+)\.", k))}
    if not layers or layers != set(range(len(layers))):
        raise ValueError("Mamba layers are missing or not numbered 0..N-1")
    return len(layers)


def _variant(state: Mapping[str, torch.Tensor]) -> str:
    if "layers.0.mixer.conv1d_b.weight" in state:
        return "Bi-Bi"
    if "layers.0.mixer.A_b_log" in state:
        return "Fo-Bi"
    return "Fo-Fo"


def config_from_state(
    state: Mapping[str, torch.Tensor],
    num_mel_bins: int = 128,
    target_frames: int | None = None,
    fstride: int = 16,
    tstride: int = 16,
) -> AuMConfig:
    """An ``AuMConfig`` that fits an AuM state dict (prefix already stripped)."""
    for key in ("cls_token", "pos_embed.pos_embed", "head.weight", "layers.0.mixer.A_log", "norm_f.weight"):
        if key not in state:
            raise ValueError(f"not an Audio-Mamba state dict: no {key!r}")
    if any(k.startswith("rope.") for k in state):
        raise ValueError("Audio-Mamba with rotary position embeddings (if_rope) is not supported")
    if "norm_f.bias" in state or "layers.0.norm.bias" in state:
        raise ValueError("Audio-Mamba with LayerNorm (rms_norm=False) is not supported; only RMSNorm")
    if "cls_token_head" in state:
        raise ValueError("Audio-Mamba with double cls tokens is not supported; only the middle cls token")
    dim = int(state["cls_token"].shape[-1])
    d_inner, d_state = state["layers.0.mixer.A_log"].shape
    num_patches = int(state["pos_embed.pos_embed"].shape[1]) - 1
    _, _, frames = infer_geometry(num_patches, num_mel_bins, target_frames, fstride, tstride)
    size = next((name for name, width in SIZES.items() if width == dim), "custom")
    return AuMConfig(
        num_classes=int(state["head.weight"].shape[0]),
        num_mel_bins=num_mel_bins,
        target_frames=frames,
        size=size,
        embed_dim=dim,
        depth=_depth(state),
        variant=_variant(state),
        d_state=int(d_state),
        d_conv=int(state["layers.0.mixer.conv1d.weight"].shape[-1]),
        expand=int(d_inner) // dim,
        dt_rank=int(state["layers.0.mixer.dt_proj.weight"].shape[1]),
        fstride=fstride,
        tstride=tstride,
    )


def build(config: AuMConfig, state: Mapping[str, torch.Tensor]) -> AuM:
    """An ``AuM`` with ``state`` loaded strictly; a mismatch is a ``ValueError``."""
    model = AuM(config)
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"weights do not fit the AuM they describe: {load_problem(exc)}") from None
    return model.eval()
