"""Audio-Mamba, AuM (Erol, Senocak, Luo, Chung & Kim 2024, arXiv:2406.03344).

Source: kaistmm/Audio-Mamba-AuM ``src/models/mamba_models.py`` and the bidirectional Mamba mixer of its
``mamba_ssm`` fork (after Vision Mamba, hustvl/Vim). The fbank ``(B, T, F)`` becomes ``(B, 1, F, T)``;
16×16 patches with stride 16 are projected by a convolution and flattened frequency-major; a cls token is
inserted in the middle of the sequence (position N // 2); learned positional embeddings are added (the
cls token's embedding is stored first); 24 residual blocks ``r + mixer(RMSNorm(r))``; a final RMSNorm;
the cls token's output is classified by a Linear head.

Variants (AuM's ``aum_type``): each mixer runs its SSM over the sequence forwards (``Fo``) and optionally
backwards (``Bi``):

- ``Fo-Fo``: unidirectional (plain Mamba);
- ``Fo-Bi``: adds ``A_b_log`` only: the backward scan reuses the forward conv output, ``x_proj``,
  ``dt_proj`` and ``D`` on the reversed sequence; the two outputs are summed before ``out_proj``;
- ``Bi-Bi``: a full second set (``conv1d_b``, ``x_proj_b``, ``dt_proj_b``, ``D_b``, ``A_b_log``) run on
  the reversed sequence; the outputs are averaged (``divide_out``) before ``out_proj``.

Sizes: tiny 192, small 384, base 768 dims, 24 layers; Mamba d_state 16, d_conv 4, expand 2,
dt_rank ceil(D / 16); RMSNorm eps 1e-5. State-dict keys are AuM's (``patch_embed.proj``,
``pos_embed.pos_embed``, ``cls_token``, ``layers.i.mixer.*``, ``layers.i.norm``, ``norm_f``, ``head``).
For a window length other than ``target_frames`` the positional grid is resampled bilinearly
(antialiased, as AuM's ``resample_abs_pos_embed``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.common import WindowedClassifier
from models.mamba import (
    MambaBlock,
    MambaMixer,
    causal_conv_silu,
    init_dt_proj,
    rescale_out_proj,
    s4d_real_log,
    selective_scan,
    ssm_inputs,
)

PATCH = 16
SIZES: dict[str, int] = {"tiny": 192, "small": 384, "base": 768}
VARIANTS = ("Fo-Fo", "Fo-Bi", "Bi-Bi")


@dataclass
class AuMConfig:
    num_classes: int = 50
    num_mel_bins: int = 128
    target_frames: int = 1024
    size: str = "tiny"  # tiny | small | base | custom
    embed_dim: int = 0  # 0: from size
    depth: int = 24
    variant: str = "Fo-Bi"
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int = 0  # 0: ceil(embed_dim / 16)
    fstride: int = 16
    tstride: int = 16
    norm_eps: float = 1e-5
    divide_out: bool = True  # Bi-Bi: average the two directions (AuM's if_devide_out)

    def __post_init__(self) -> None:
        if self.size != "custom":
            if self.size not in SIZES:
                raise ValueError(f"unknown AuM size {self.size!r}; known: {', '.join(SIZES)}, custom")
            if self.embed_dim and self.embed_dim != SIZES[self.size]:
                raise ValueError(
                    f"AuM size {self.size!r} has embed_dim {SIZES[self.size]}; use size='custom'"
                )
            self.embed_dim = SIZES[self.size]
        if self.embed_dim < 1 or self.depth < 1:
            raise ValueError("AuM needs embed_dim > 0 and depth > 0")
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown AuM variant {self.variant!r}; known: {', '.join(VARIANTS)}")
        if self.num_mel_bins < PATCH or self.target_frames < PATCH:
            raise ValueError(f"AuM needs at least {PATCH} mel bins and {PATCH} target frames")

    def grid(self, frames: int) -> tuple[int, int]:
        """Patch grid (frequency, time) of a ``frames``-long input."""
        return (self.num_mel_bins - PATCH) // self.fstride + 1, (frames - PATCH) // self.tstride + 1


def resample_grid(pos: torch.Tensor, old: tuple[int, int], new: tuple[int, int]) -> torch.Tensor:
    """Patch positional embeddings ``(1, old_f * old_t, D)`` -> ``(1, new_f * new_t, D)``, bilinear."""
    if old == new:
        return pos
    grid = pos.reshape(1, old[0], old[1], -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new, mode="bilinear", antialias=True, align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, new[0] * new[1], -1)


class BiMambaMixer(MambaMixer):
    """Mamba mixer with AuM's backward branch (``Fo-Bi`` or ``Bi-Bi``; ``Fo-Fo`` is the plain mixer)."""

    def __init__(self, d_model: int, cfg: AuMConfig) -> None:
        super().__init__(d_model, cfg.d_state, cfg.d_conv, cfg.expand, cfg.dt_rank or None)
        self.variant = cfg.variant
        self.divide_out = cfg.divide_out
        d_inner = self.d_inner
        if cfg.variant in ("Fo-Bi", "Bi-Bi"):
            self.A_b_log = nn.Parameter(s4d_real_log(d_inner, self.d_state))
        if cfg.variant == "Bi-Bi":
            self.conv1d_b = nn.Conv1d(d_inner, d_inner, cfg.d_conv, groups=d_inner, padding=cfg.d_conv - 1)
            self.x_proj_b = nn.Linear(d_inner, self.dt_rank + 2 * self.d_state, bias=False)
            self.dt_proj_b = nn.Linear(self.dt_rank, d_inner, bias=True)
            init_dt_proj(self.dt_proj_b, self.dt_rank, 0.001, 0.1, 1e-4)
            self.D_b = nn.Parameter(torch.ones(d_inner))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # (B, L, d_inner) each
        if self.variant == "Fo-Fo":
            y = self.scan(x, z)
        elif self.variant == "Fo-Bi":
            y = self._forward_then_backward_shared(x, z)
        else:
            y = self._forward_and_backward_sets(x, z)
        return self.out_proj(y)

    def _forward_then_backward_shared(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Fo-Bi: one conv and projection; scans forwards with A and backwards with A_b; summed."""
        xc = causal_conv_silu(x, self.conv1d)
        dt, B, C = ssm_inputs(xc, self.x_proj, self.dt_proj, self.dt_rank, self.d_state)
        A, A_b = -torch.exp(self.A_log.float()), -torch.exp(self.A_b_log.float())
        bias, impl = self.dt_proj.bias, self.scan_impl
        y_f = selective_scan(xc, dt, A, B, C, self.D, z, bias, True, impl)
        xc_r, dt_r, B_r, C_r, z_r = (t.flip(1) for t in (xc, dt, B, C, z))
        y_b = selective_scan(xc_r, dt_r, A_b, B_r, C_r, self.D, z_r, bias, True, impl).flip(1)
        return y_f + y_b

    def _forward_and_backward_sets(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Bi-Bi: the backward direction has its own conv, projections, A_b and D_b; averaged."""
        y_f = self.scan(x, z)
        xc_b = causal_conv_silu(x.flip(1), self.conv1d_b)
        dt_b, B_b, C_b = ssm_inputs(xc_b, self.x_proj_b, self.dt_proj_b, self.dt_rank, self.d_state)
        A_b = -torch.exp(self.A_b_log.float())
        y_b = selective_scan(
            xc_b, dt_b, A_b, B_b, C_b, self.D_b, z.flip(1), self.dt_proj_b.bias, True, self.scan_impl
        ).flip(1)
        return (y_f + y_b) / 2 if self.divide_out else y_f + y_b


class PatchEmbed(nn.Module):
    """16×16 patches, strides ``(fstride, tstride)`` -> tokens ``(B, f * t, D)``, frequency-major."""

    def __init__(self, dim: int, fstride: int, tstride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=(PATCH, PATCH), stride=(fstride, tstride))

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        return self.proj(fbank.transpose(1, 2).unsqueeze(1)).flatten(2).transpose(1, 2)


class PosEmbed(nn.Module):
    """Holds ``pos_embed (1, 1 + f * t, D)`` (cls first), under AuM's key ``pos_embed.pos_embed``."""

    def __init__(self, num_patches: int, dim: int) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + num_patches, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)


class AuM(WindowedClassifier):
    """``forward(fbank (B, T, F) normalised) -> logits (B, C)`` for any T ≥ 16."""

    def __init__(self, cfg: AuMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        dim = cfg.embed_dim
        self.grid = cfg.grid(cfg.target_frames)
        self.patch_embed = PatchEmbed(dim, cfg.fstride, cfg.tstride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = PosEmbed(self.grid[0] * self.grid[1], dim)
        self.layers = nn.ModuleList(
            MambaBlock(dim, BiMambaMixer(dim, cfg), cfg.norm_eps) for _ in range(cfg.depth)
        )
        self.norm_f = nn.RMSNorm(dim, eps=cfg.norm_eps)
        self.head = nn.Linear(dim, cfg.num_classes)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        nn.init.kaiming_uniform_(self.patch_embed.proj.weight, a=math.sqrt(5))
        rescale_out_proj(self, cfg.depth)

    def tokens(self, fbank: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Embedded sequence ``(B, N + 1, D)`` with the cls token at index ``N // 2``, and that index."""
        batch, frames, bins = fbank.shape
        if bins != self.cfg.num_mel_bins:
            raise ValueError(f"expected {self.cfg.num_mel_bins} mel bins, got {bins}")
        if frames < PATCH:
            raise ValueError(f"AuM needs at least {PATCH} frames, got {frames}")
        x = self.patch_embed(fbank).float()  # (B, N, D); the residual stream stays fp32, as AuM's
        pos = self.pos_embed.pos_embed
        x = x + resample_grid(pos[:, 1:], self.grid, self.cfg.grid(frames))
        cls = (self.cls_token + pos[:, :1]).expand(batch, -1, -1)
        middle = x.shape[1] // 2
        return torch.cat([x[:, :middle], cls, x[:, middle:]], dim=1), middle

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        residual, cls_index = self.tokens(fbank)
        for layer in self.layers:
            residual = layer(residual)
        return self.head(self.norm_f(residual[:, cls_index]))
