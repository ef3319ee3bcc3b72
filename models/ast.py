"""Audio Spectrogram Transformer (Gong, Chung & Glass, Interspeech 2021, arXiv:2104.01778).

Source: YuanGongND/ast ``src/models/ast_models.py`` (a DeiT backbone from timm). The fbank ``(B, T, F)``
becomes an image ``(B, 1, F, T)``; 16×16 patches with frequency/time strides (10: overlap 6; 16: none)
are projected by a convolution; a cls and a distillation token go in front; learned positional
embeddings are added; pre-norm transformer blocks; the final LayerNorm's cls and distillation outputs are
averaged and classified by LayerNorm + Linear.

Sizes: tiny 192 dims / 3 heads, small 384 / 6, base 768 / 12, all 12 layers with MLP ×4, or custom.

Positional embeddings are built for ``target_frames``; for another window length the time axis of the
grid is cut from the centre (shorter) or resized bilinearly (longer), as the AST recipes do.

``stem = "conv"`` (streamd's variant, not in the AST paper) replaces the 16×16 patch projection by a
convolutional stem, as Xiao et al. (NeurIPS 2021, arXiv:2106.14881, "Early convolutions help transformers
see better") did for ViT: four 3×3 conv units at stride 2 (``stem_channels`` c, 2c, 4c, 8c; batch norm,
GELU) and a 1×1 projection to the embedding, one token per 16×16 area (the grid of stride 16, rounded
up); its parameters are ``patch_embed.convs.N.{0, 1}`` (conv, batch norm) and ``patch_embed.out``.
Small-data training from scratch is what it is for; checkpoints of the official AST layout have the patch
stem.

Parameter names follow the official checkpoints without their ``module.v.`` prefix (``cls_token``,
``dist_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.N.{norm1, attn.qkv, attn.proj, norm2,
mlp.fc1, mlp.fc2}``, ``norm``); the official ``mlp_head.0`` / ``mlp_head.1`` are ``head_norm`` / ``head``.
See ``models.convert_ast`` for the official and Hugging Face layouts.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.common import WindowedClassifier
from models.conv_units import conv_unit

PATCH = 16
STEMS = ("patch", "conv")
CONV_STEM_UNITS = 4  # stride-2 units of the conv stem: 2**4 = PATCH
SIZES: dict[str, tuple[int, int, int]] = {  # name -> (embed_dim, depth, num_heads)
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
}


@dataclass
class ASTConfig:
    num_classes: int = 50
    num_mel_bins: int = 128
    target_frames: int = 1024
    size: str = "tiny"  # tiny | small | base | custom
    embed_dim: int = 0  # 0: from size
    depth: int = 0
    num_heads: int = 0
    mlp_ratio: float = 4.0
    fstride: int = 10
    tstride: int = 10
    layer_norm_eps: float = 1e-6  # timm's; Hugging Face checkpoints carry 1e-12
    qkv_bias: bool = True
    dropout: float = 0.0
    drop_path: float = 0.0  # stochastic depth of the last block (DeiT: 0.1), 0 at the first, linear between
    stem: str = "patch"  # patch: AST's 16x16 patch projection; conv: the convolutional stem (see above)
    stem_channels: int = 24  # conv stem: channels of its first unit, doubled by each next one

    def __post_init__(self) -> None:
        if self.size != "custom":
            if self.size not in SIZES:
                raise ValueError(f"unknown AST size {self.size!r}; known: {', '.join(SIZES)}, custom")
            preset = SIZES[self.size]
            given = (self.embed_dim, self.depth, self.num_heads)
            if any(g and g != p for g, p in zip(given, preset, strict=True)):
                raise ValueError(
                    f"AST size {self.size!r} is {preset} (embed_dim, depth, num_heads); use size='custom'"
                )
            self.embed_dim, self.depth, self.num_heads = preset
        if min(self.embed_dim, self.depth, self.num_heads) < 1 or self.embed_dim % self.num_heads:
            raise ValueError(
                "AST needs embed_dim, depth, num_heads > 0 with embed_dim divisible by num_heads"
            )
        for stride in (self.fstride, self.tstride):
            if not 1 <= stride <= PATCH:
                raise ValueError(f"AST strides must be in 1..{PATCH}, got {stride}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path}")
        if self.stem not in STEMS:
            raise ValueError(f"AST stem must be one of {', '.join(STEMS)}, got {self.stem!r}")
        if self.stem == "conv" and (self.fstride, self.tstride) != (PATCH, PATCH):
            raise ValueError(f"the conv stem's tokens are {PATCH} apart: set fstride = tstride = {PATCH}")
        if self.stem == "conv" and self.stem_channels < 1:
            raise ValueError(f"stem_channels must be positive, got {self.stem_channels}")
        if self.num_mel_bins < PATCH or self.target_frames < PATCH:
            raise ValueError(f"AST needs at least {PATCH} mel bins and {PATCH} target frames")

    def grid(self, frames: int) -> tuple[int, int]:
        """Patch grid (frequency, time) of a ``frames``-long input."""
        if self.stem == "conv":
            return _halved(self.num_mel_bins, CONV_STEM_UNITS), _halved(frames, CONV_STEM_UNITS)
        return (self.num_mel_bins - PATCH) // self.fstride + 1, (frames - PATCH) // self.tstride + 1


def _halved(size: int, times: int) -> int:
    """``size`` after ``times`` stride-2 convolutions of kernel 3 and padding 1 (each: ``⌈size / 2⌉``)."""
    for _ in range(times):
        size = (size + 1) // 2
    return size


def adapt_time_grid(pos: torch.Tensor, t_new: int) -> torch.Tensor:
    """Positional grid ``(1, D, f, t)`` -> ``(1, D, f, t_new)``: centre cut if shorter, bilinear if longer."""
    t_old = pos.shape[-1]
    if t_new == t_old:
        return pos
    if t_new < t_old:
        start = t_old // 2 - t_new // 2
        return pos[..., start : start + t_new]
    return F.interpolate(pos, size=(pos.shape[-2], t_new), mode="bilinear", align_corners=False)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (timm layout)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, head_dim)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``. In training, each
    branch is dropped for a sample with probability ``drop_path`` (stochastic depth; the kept ones are
    scaled by ``1 / (1 - drop_path)``); at inference both always count."""

    def __init__(self, cfg: ASTConfig, drop_path: float = 0.0) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.attn = Attention(dim, cfg.num_heads, cfg.qkv_bias, cfg.dropout)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.mlp = MLP(dim, int(dim * cfg.mlp_ratio), cfg.dropout)
        self.drop_path = drop_path

    def _branch(self, out: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_path == 0.0:
            return out
        keep = 1.0 - self.drop_path
        mask = out.new_empty(out.shape[0], *([1] * (out.dim() - 1))).bernoulli_(keep)
        return out * mask / keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._branch(self.attn(self.norm1(x)))
        return x + self._branch(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """16×16 patches with strides ``(fstride, tstride)`` -> tokens ``(B, f * t, D)``, frequency-major."""

    def __init__(self, dim: int, fstride: int, tstride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=(PATCH, PATCH), stride=(fstride, tstride))

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        image = fbank.transpose(1, 2).unsqueeze(1)  # (B, 1, F, T)
        return self.proj(image).flatten(2).transpose(1, 2)


class ConvPatchEmbed(nn.Module):
    """The conv stem: ``CONV_STEM_UNITS`` 3×3 conv units at stride 2 and a 1×1 projection -> tokens
    ``(B, f * t, D)``, frequency-major, ``(f, t) = ASTConfig.grid``."""

    def __init__(self, dim: int, channels: int) -> None:
        super().__init__()
        widths = [1] + [channels * 2**i for i in range(CONV_STEM_UNITS)]
        self.convs = nn.Sequential(*(conv_unit(a, b, stride=2) for a, b in itertools.pairwise(widths)))
        self.out = nn.Conv2d(widths[-1], dim, kernel_size=1)

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        image = fbank.transpose(1, 2).unsqueeze(1)  # (B, 1, F, T)
        return self.out(self.convs(image)).flatten(2).transpose(1, 2)


class AST(WindowedClassifier):
    """``forward(fbank (B, T, F) normalised) -> logits (B, C)`` for any T ≥ 16."""

    def __init__(self, cfg: ASTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        dim = cfg.embed_dim
        self.grid = cfg.grid(cfg.target_frames)
        self.patch_embed: nn.Module = (
            ConvPatchEmbed(dim, cfg.stem_channels)
            if cfg.stem == "conv"
            else PatchEmbed(dim, cfg.fstride, cfg.tstride)
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 2 + self.grid[0] * self.grid[1], dim))
        self.pos_drop = nn.Dropout(cfg.dropout)
        rates = [cfg.drop_path * i / max(1, cfg.depth - 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(Block(cfg, rate) for rate in rates)
        self.norm = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.head_norm = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.head = nn.Linear(dim, cfg.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for p in (self.cls_token, self.dist_token, self.pos_embed):
            nn.init.trunc_normal_(p, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def positional_embedding(self, frames: int) -> torch.Tensor:
        """``(1, 2 + f * t, D)`` for a ``frames``-long input (adapted from the ``target_frames`` grid)."""
        f_dim, t_dim = self.grid
        t_new = self.cfg.grid(frames)[1]
        if t_new == t_dim:
            return self.pos_embed
        grid = self.pos_embed[:, 2:].transpose(1, 2).reshape(1, -1, f_dim, t_dim)
        grid = adapt_time_grid(grid, t_new).flatten(2).transpose(1, 2)
        return torch.cat([self.pos_embed[:, :2], grid], dim=1)

    def embed(self, fbank: torch.Tensor) -> torch.Tensor:
        """Pooled clip embedding ``(B, D)``: mean of the cls and distillation outputs."""
        tokens = self.token_outputs(fbank)
        return (tokens[:, 0] + tokens[:, 1]) / 2

    def forward_tokens(self, fbank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, C)`` of the cls and of the distillation token through the head, each on its own
        (training with a teacher, DeiT-style: cls learns the labels, dist the teacher)."""
        logits = self.head(self.head_norm(self.token_outputs(fbank)))  # (B, 2, C)
        return logits[:, 0], logits[:, 1]

    def token_outputs(self, fbank: torch.Tensor) -> torch.Tensor:
        """The final LayerNorm's cls and distillation outputs ``(B, 2, D)``."""
        batch, frames, bins = fbank.shape
        if bins != self.cfg.num_mel_bins:
            raise ValueError(f"expected {self.cfg.num_mel_bins} mel bins, got {bins}")
        if frames < PATCH:
            raise ValueError(f"AST needs at least {PATCH} frames, got {frames}")
        x = self.patch_embed(fbank)
        prefix = torch.cat([self.cls_token, self.dist_token], dim=1).expand(batch, -1, -1)
        x = torch.cat([prefix.to(x.dtype), x], dim=1) + self.positional_embedding(frames)
        x = self.pos_drop(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, :2])

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_norm(self.embed(fbank)))
