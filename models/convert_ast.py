"""AST checkpoints from elsewhere -> ``models.ast.AST`` state dicts and configs.

Two layouts are read:

- the official YuanGongND/ast ``.pth`` (a DataParallel state dict): ``module.v.{cls_token, dist_token,
  pos_embed, patch_embed.proj.*, blocks.N.*, norm.*}`` and ``module.mlp_head.{0,1}.*`` (timm's unused
  ImageNet ``v.head`` / ``v.head_dist`` are dropped);
- Hugging Face ``ASTForAudioClassification`` (``audio_spectrogram_transformer.*`` and ``classifier.*``),
  with either the older per-layer names ``encoder.layer.N.attention.attention.{query,key,value}``,
  ``attention.output.dense``, ``intermediate.dense``, ``output.dense`` or the current ones
  ``layers.N.attention.{q,k,v,o}_proj``, ``layers.N.mlp.fc{1,2}``; q, k and v are fused into ``qkv``.

Sizes are read from tensor shapes; what shapes cannot tell (strides, window length, heads) comes from the
Hugging Face config, from arguments, or from the official recipes (64-dim heads; equal strides 10 or 16;
1024, 512 or 128 frames). Every problem is a ``ValueError`` naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from models.ast import AST, PATCH, SIZES, ASTConfig
from models.checkpoint import load_problem

RECIPE_FRAMES = (1024, 512, 128)  # AudioSet / ESC-50 / Speech Commands target lengths
HF_PREFIX = "audio_spectrogram_transformer."

_HF_LAYER = {  # per-layer suffix (older and current transformers names) -> streamd name
    "attention.attention.query": "q",
    "attention.attention.key": "k",
    "attention.attention.value": "v",
    "attention.output.dense": "attn.proj",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "attention.q_proj": "q",
    "attention.k_proj": "k",
    "attention.v_proj": "v",
    "attention.o_proj": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
}
_HF_GLOBAL = {
    "embeddings.cls_token": "cls_token",
    "embeddings.distillation_token": "dist_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
_HF_LAYER_RE = re.compile(r"^(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)$")


def is_official_layout(state: Mapping[str, Any]) -> bool:
    return any(k.startswith(("module.v.", "v.")) for k in state) and any("mlp_head." in k for k in state)


def is_hf_layout(state: Mapping[str, Any]) -> bool:
    return any(k.startswith(HF_PREFIX) for k in state)


def from_official(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official ``.pth`` keys -> ``AST`` keys."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key.removeprefix("module.")
        if name.startswith("mlp_head."):
            index, rest = name.removeprefix("mlp_head.").split(".", 1)
            if index not in ("0", "1"):
                raise ValueError(f"unexpected official AST key {key!r}")
            out[("head_norm." if index == "0" else "head.") + rest] = value
        elif name.startswith("v."):
            name = name.removeprefix("v.")
            if name.startswith(("head.", "head_dist.")):
                continue  # timm's ImageNet heads, unused by AST
            out[name] = value
        else:
            raise ValueError(f"unexpected official AST key {key!r}")
    return out


def from_hf(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face ``ASTForAudioClassification`` keys (older or current names) -> ``AST`` keys."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key.startswith("classifier."):
            rest = key.removeprefix("classifier.")
            mapped = {"layernorm": "head_norm", "dense": "head"}.get(rest.rsplit(".", 1)[0])
            if mapped is None:
                raise ValueError(f"unexpected Hugging Face AST key {key!r}")
            out[f"{mapped}.{rest.rsplit('.', 1)[1]}"] = value
            continue
        if not key.startswith(HF_PREFIX):
            raise ValueError(f"unexpected Hugging Face AST key {key!r}")
        name = key.removeprefix(HF_PREFIX)
        if name in _HF_GLOBAL:
            out[_HF_GLOBAL[name]] = value
            continue
        match = _HF_LAYER_RE.match(name)
        if match is None or match.group(2) not in _HF_LAYER:
            raise ValueError(f"unexpected Hugging Face AST key {key!r}")
        layer, part, kind = int(match.group(1)), _HF_LAYER[match.group(2)], match.group(3)
        if part in ("q", "k", "v"):
            qkv.setdefault((layer, kind), {})[part] = value
        else:
            out[f"blocks.{layer}.{part}.{kind}"] = value
    for (layer, kind), parts in sorted(qkv.items()):
        if set(parts) != {"q", "k", "v"}:
            raise ValueError(f"layer {layer}: incomplete query/key/value {kind}s ({sorted(parts)})")
        out[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def _depth(state: Mapping[str, torch.Tensor]) -> int:
    layers = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    if not layers or layers != set(range(len(layers))):
        raise ValueError(
            f"transformer blocks are missing or not numbered 0..N-1 (found {sorted(layers)[:5]}...)"
        )
    return len(layers)


def infer_geometry(
    num_patches: int,
    num_mel_bins: int = 128,
    target_frames: int | None = None,
    fstride: int | None = None,
    tstride: int | None = None,
) -> tuple[int, int, int]:
    """``(fstride, tstride, target_frames)`` consistent with a positional grid of ``num_patches``."""
    candidates = [(fstride, tstride)] if fstride and tstride else []
    if not candidates:
        candidates = [(s, tstride or s) for s in ((fstride,) if fstride else (10, 16))]
    for fs, ts in candidates:
        f_dim = (num_mel_bins - PATCH) // fs + 1
        if num_patches % f_dim:
            continue
        t_dim = num_patches // f_dim
        frames_options = [target_frames] if target_frames else [*RECIPE_FRAMES, (t_dim - 1) * ts + PATCH]
        for frames in frames_options:
            if (frames - PATCH) // ts + 1 == t_dim:
                return fs, ts, frames
    raise ValueError(
        f"cannot place {num_patches} positional embeddings on a patch grid of {num_mel_bins} mel bins "
        f"(strides {candidates}, target frames {target_frames or 'any'}); give the strides / target frames"
    )


def config_from_state(
    state: Mapping[str, torch.Tensor],
    num_mel_bins: int = 128,
    target_frames: int | None = None,
    fstride: int | None = None,
    tstride: int | None = None,
    num_heads: int | None = None,
    layer_norm_eps: float = 1e-6,
) -> ASTConfig:
    """An ``ASTConfig`` that fits an ``AST`` state dict (see the module docstring for what is assumed)."""
    for key in (
        "cls_token",
        "pos_embed",
        "patch_embed.proj.weight",
        "head.weight",
        "blocks.0.mlp.fc1.weight",
    ):
        if key not in state:
            raise ValueError(f"not an AST state dict: no {key!r}")
    dim = int(state["cls_token"].shape[-1])
    depth = _depth(state)
    heads = num_heads or max(1, dim // 64)
    mlp_ratio = state["blocks.0.mlp.fc1.weight"].shape[0] / dim
    fs, ts, frames = infer_geometry(
        int(state["pos_embed"].shape[1]) - 2, num_mel_bins, target_frames, fstride, tstride
    )
    preset = next((name for name, dims in SIZES.items() if dims == (dim, depth, heads)), None)
    return ASTConfig(
        num_classes=int(state["head.weight"].shape[0]),
        num_mel_bins=num_mel_bins,
        target_frames=frames,
        size=preset or "custom",
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=mlp_ratio,
        fstride=fs,
        tstride=ts,
        layer_norm_eps=layer_norm_eps,
        qkv_bias="blocks.0.attn.qkv.bias" in state,
    )


def config_from_hf(hf: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> ASTConfig:
    """An ``ASTConfig`` from a Hugging Face ``config.json`` (and the converted state for the classes)."""
    if hf.get("model_type") not in (None, "audio-spectrogram-transformer"):
        raise ValueError(f"config.json is for model_type {hf.get('model_type')!r}, not an AST")
    if hf.get("patch_size", PATCH) not in (PATCH, [PATCH, PATCH]):
        raise ValueError(f"only {PATCH}x{PATCH} patches are supported, got {hf.get('patch_size')}")
    if hf.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"only the exact GELU activation is supported, got {hf.get('hidden_act')!r}")
    dim, depth, heads = (
        _positive_int(hf, key, default)
        for key, default in (("hidden_size", 768), ("num_hidden_layers", 12), ("num_attention_heads", 12))
    )
    if "head.weight" not in state:
        raise ValueError("the weights have no classifier (classifier.dense.*): not an audio classifier")
    preset = next((name for name, dims in SIZES.items() if dims == (dim, depth, heads)), None)
    return ASTConfig(
        num_classes=int(state["head.weight"].shape[0]),
        num_mel_bins=int(hf.get("num_mel_bins", 128)),
        target_frames=int(hf.get("max_length", 1024)),
        size=preset or "custom",
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=int(hf.get("intermediate_size", 4 * dim)) / dim,
        fstride=int(hf.get("frequency_stride", 10)),
        tstride=int(hf.get("time_stride", 10)),
        layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
        qkv_bias=bool(hf.get("qkv_bias", True)),
    )


def _positive_int(hf: Mapping[str, Any], key: str, default: int) -> int:
    value = hf.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"config.json {key} must be a positive whole number, got {value!r}")
    return value


def build(config: ASTConfig, state: Mapping[str, torch.Tensor]) -> AST:
    """An ``AST`` with ``state`` loaded strictly; a mismatch is a ``ValueError``."""
    model = AST(config)
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"weights do not fit the AST they describe: {load_problem(exc)}") from None
    return model.eval()


def hf_labels(hf: Mapping[str, Any]) -> list[str] | None:
    """Labels in index order from ``id2label``, or None when absent."""
    id2label = hf.get("id2label")
    if not id2label:
        return None
    if not isinstance(id2label, dict) or not all(str(k).isdigit() for k in id2label):
        raise ValueError("config.json id2label must map class indices to names")
    items = sorted((int(k), str(v)) for k, v in id2label.items())
    if [i for i, _ in items] != list(range(len(items))):
        raise ValueError("config.json id2label is not indexed 0..N-1")
    return [name for _, name in items]
