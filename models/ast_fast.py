"""Inference-only fast path of the AST (``models.ast``), whose plain ``forward`` stays the reference.

What it saves per call, with the same weights and the same result (fp32: ≤ 1e-4 of the reference):

- the positional embedding for a window length is computed once and cached (the daemon's window is
  fixed), with the cls and distillation tokens already added to theirs;
- a conv stem's batch norms are folded into its convolutions;
- bf16: the linear layers and the patch projection hold bf16 copies of their weights, cast once, instead
  of autocast casting ~all parameters on every call; LayerNorms, the residual stream and the logits stay
  fp32, attention (fused qkv) runs in bf16 as plain products over groups of heads (``bf16_attention``;
  fp32 attention is ``scaled_dot_product_attention``);
- int8: the linear layers of every block but the first are torch's dynamic int8 ones
  (``models.quantize``). On a CPU with native bf16 the first block's linear layers hold bf16 weights and
  attention runs in bf16 (in int8 mode fp32 attention was a third of AST-base's time); elsewhere both
  stay fp32. The head and the rest run in fp32. Measured on the shipped AST-tiny (400 real 5-s windows):
  all blocks int8 with fp32 attention left a largest probability difference of 0.019-0.020 against
  fp32, at the 0.02 bar; the first block kept out of int8 halves it (0.008-0.009). On AST-base (2
  threads) the bf16 variant took 166-176 ms against 204-218 ms for all-int8 with fp32 attention; with
  ``bf16_attention`` instead of bf16 ``scaled_dot_product_attention`` it took 240-279 against 320-324
  ms on a slower AVX-512 EPYC, where int8's matrix products (about 130 ms) and attention (about 60 ms)
  are most of what is left.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from models import bf16 as bf16_info
from models.ast import AST, Block
from models.batch_norm_folding import fold_sequential_batch_norms
from models.common import WindowedClassifier
from models.quantize import quantize_int8

FAST_PRECISIONS = ("fp32", "bf16", "int8")
INT8_KEPT_BLOCKS = 1  # int8: the first blocks kept out of int8 (their inputs quantise worst)
ATTENTION_CHUNK = 1_500_000  # bf16 attention: score elements per group of heads (see bf16_attention)


def bf16_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q kᵀ / √d) v`` for bf16 ``(B, H, N, d)`` inputs, a few heads at a time.

    Plain matrix products and softmax over groups of heads whose score matrices hold about
    ``ATTENTION_CHUNK`` elements, so that each group's scores stay in cache between the three steps.
    On 2 cores of an AMD EPYC with AVX-512 bf16 (AST-base, 602 tokens, one layer) it took about 5 ms
    against 8-9.5 ms for ``scaled_dot_product_attention`` in bf16; on the shipped AST-tiny over 200
    real windows its probabilities differ from fp32 as much as that kernel's (largest 0.025 / 0.005 for
    bf16 / int8 against 0.025 / 0.005).
    """
    batch, heads, tokens, dim = q.shape
    q = q * dim**-0.5  # a power of two for 64-dim heads: exact in bf16
    group = max(1, min(heads, ATTENTION_CHUNK // max(1, batch * tokens * tokens)))
    if group == heads:
        return torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
    out = torch.empty_like(q)
    for h in range(0, heads, group):
        scores = q[:, h : h + group] @ k[:, h : h + group].transpose(-1, -2)
        torch.matmul(torch.softmax(scores, dim=-1), v[:, h : h + group], out=out[:, h : h + group])
    return out


class FastAST(WindowedClassifier):
    """``forward(fbank (B, T, F) normalised) -> logits (B, C)`` equal to ``AST.forward`` (see module doc)."""

    def __init__(self, model: AST, precision: str = "fp32", native_bf16: bool | None = None) -> None:
        """``native_bf16`` (int8 only): whether this CPU runs bf16 natively (None: ask its flags)."""
        super().__init__()
        if precision not in FAST_PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(FAST_PRECISIONS)}, got {precision!r}")
        self.cfg = model.cfg
        self.num_classes = model.num_classes
        self.precision = precision
        self.reference = model.eval()  # positional embeddings of new window lengths come from here
        body = copy.deepcopy(model).eval()
        fold_sequential_batch_norms(body.patch_embed)  # a conv stem's batch norms (a patch stem has none)
        if precision != "int8":
            native_bf16 = False  # fp32 and bf16 do not depend on it
        elif native_bf16 is None:
            native_bf16 = bf16_info.native_bf16("cpu")[0]
        self.attention_dtype = torch.bfloat16 if precision == "bf16" or native_bf16 else torch.float32
        if precision == "int8":  # the later transformer blocks; the first ones and the small head do not
            kept = list(body.blocks[:INT8_KEPT_BLOCKS])
            if native_bf16:
                for module in nn.ModuleList(kept).modules():
                    if isinstance(module, nn.Linear):
                        module.to(torch.bfloat16)
            body.blocks = nn.ModuleList(kept + list(quantize_int8(body.blocks[INT8_KEPT_BLOCKS:])))
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        if precision == "bf16":
            for module in body.modules():
                if isinstance(module, (nn.Linear, nn.Conv2d)):
                    module.to(torch.bfloat16)
        self.patch_embed = body.patch_embed
        self.blocks = body.blocks
        self.norm, self.head_norm, self.head = body.norm, body.head_norm, body.head
        self._pos: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def _positions(self, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prefix tokens + their positions (1, 2, D), patch positions (1, N, D))`` for ``frames``."""
        if frames not in self._pos:
            ref = self.reference
            pos = ref.positional_embedding(frames).detach().float()
            prefix = torch.cat([ref.cls_token, ref.dist_token], dim=1).detach().float() + pos[:, :2]
            self._pos[frames] = (prefix.clone(), pos[:, 2:].clone())
        return self._pos[frames]

    def _linear(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        weight = getattr(layer, "weight", None)  # a dynamic int8 layer's is a method: fp32 input
        return layer(x.to(weight.dtype if isinstance(weight, torch.Tensor) else torch.float32))

    def _attention(self, block: Block, x: torch.Tensor) -> torch.Tensor:
        attn = block.attn
        batch, tokens, dim = x.shape
        qkv = self._linear(attn.qkv, x).reshape(batch, tokens, 3, attn.num_heads, dim // attn.num_heads)
        q, k, v = qkv.to(self.attention_dtype).permute(2, 0, 3, 1, 4)
        if q.dtype == torch.bfloat16:
            out = bf16_attention(q, k, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return self._linear(attn.proj, out.transpose(1, 2).reshape(batch, tokens, dim)).float()

    def _mlp(self, block: Block, x: torch.Tensor) -> torch.Tensor:
        return self._linear(block.mlp.fc2, F.gelu(self._linear(block.mlp.fc1, x))).float()

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        batch, frames, bins = fbank.shape
        if bins != self.cfg.num_mel_bins or frames < 16:
            return self.reference(fbank)  # the reference raises its own clear error
        prefix, pos = self._positions(frames)
        x = self.patch_embed(fbank.to(self.dtype)).float() + pos
        x = torch.cat([prefix.expand(batch, -1, -1), x], dim=1)
        for block in self.blocks:
            x = x + self._attention(block, block.norm1(x))
            x = x + self._mlp(block, block.norm2(x))
        x = self.norm(x)
        return self._linear(self.head, self.head_norm((x[:, 0] + x[:, 1]) / 2)).float()
