"""The Mamba selective state-space mixer in pure PyTorch (Gu & Dao 2023, arXiv:2312.00752).

Source: state-spaces/mamba, ``mamba_ssm/modules/mamba_simple.py``. Parameter names and shapes are that
module's (``in_proj``, ``conv1d``, ``x_proj``, ``dt_proj``, ``A_log``, ``D``, ``out_proj``), so its
state dicts and Audio-Mamba's load as they are.

The selective scan, per channel ``d`` and state ``n`` (``Δ = softplus(dt + dt_bias)``)::

    h_t = exp(Δ_t · A) ⊙ h_{t-1} + Δ_t · B_t · u_t        y_t = C_t · h_t + D · u_t,   y_t ← y_t · silu(z_t)

runs three ways, all time-major (``u``, ``Δ``, ``z``: ``(batch, L, d_inner)``; ``B``, ``C``: ``(batch, L,
d_state)``; ``A``: ``(d_inner, d_state)``):

- ``selective_scan_ref``: the definition, one time step at a time;
- ``selective_scan_chunked``: the fast path for CPU training and windowed inference. Time is cut into
  chunks; per chunk the discretisation ``exp(Δ·A)``, the inputs ``Δ·B·u`` and the read-out ``C·h`` are
  single batched tensor operations, and the carried state advances by one fused multiply-add per step.
  On CPU this measured faster than parallel-prefix forms (Hillis–Steele doubling or log-space cumulative
  sums within a chunk), which do O(log K) times the memory traffic; see docs/models.md;
- mamba-ssm's fused CUDA kernel, when the tensors are on CUDA and ``mamba_ssm`` imports (never required).

``MambaMixer.step`` advances one token with explicit state: ``conv_state (B, d_inner, d_conv)`` holds the
last ``d_conv`` conv inputs, ``ssm_state (B, d_inner, d_state)`` is ``h``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SCAN_IMPLS = ("auto", "chunked", "ref")
CHUNK_ELEMENTS = 1 << 17  # float32 elements per chunk tensor: 512 KiB


def _delta(delta: torch.Tensor, delta_bias: torch.Tensor | None, softplus: bool) -> torch.Tensor:
    """The step size Δ in float32: ``softplus(delta + bias)`` (or without softplus)."""
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()
    return F.softplus(delta) if softplus else delta


def _finish(y: torch.Tensor, u: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None) -> torch.Tensor:
    """Skip connection ``D·u`` and gate ``silu(z)``."""
    if D is not None:
        y = y + u * D.float()
    if z is not None:
        y = y * F.silu(z.float())
    return y


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain sequential selective scan (float32): returns ``y (batch, L, d_inner)`` and the last state."""
    with torch.autocast(u.device.type, enabled=False):
        u, A, B, C = u.float(), A.float(), B.float(), C.float()
        dt = _delta(delta, delta_bias, delta_softplus)  # (b, L, d)
        batch, length, d_inner = u.shape
        h = u.new_zeros(batch, d_inner, A.shape[1]) if initial_state is None else initial_state.float()
        ys = []
        for t in range(length):
            decay = torch.exp(dt[:, t, :, None] * A)  # (b, d, n)
            drive = dt[:, t, :, None] * B[:, t, None, :] * u[:, t, :, None]  # (b, d, n)
            h = decay * h + drive
            ys.append((h * C[:, t, None, :]).sum(-1))  # (b, d)
        y = torch.stack(ys, dim=1) if ys else u.new_zeros(batch, 0, d_inner)
        return _finish(y, u, D, z), h


def selective_scan_chunked(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    initial_state: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked selective scan (float32), equal to ``selective_scan_ref``; returns ``(y, last_state)``.

    ``chunk_size`` None picks the longest chunk (at most 64 steps) whose ``(batch, K, d_inner, d_state)``
    tensors stay within about 512 KiB, so that a chunk's work stays in the CPU cache.
    """
    with torch.autocast(u.device.type, enabled=False):
        u, A, B, C = u.float(), A.float(), B.float(), C.float()
        dt = _delta(delta, delta_bias, delta_softplus)
        batch, _, d_inner = u.shape
        if chunk_size is None:
            chunk_size = max(1, min(64, CHUNK_ELEMENTS // (batch * d_inner * A.shape[1])))
        h = u.new_zeros(batch, d_inner, A.shape[1]) if initial_state is None else initial_state.float()
        outs = []
        # split (not dt[:, t0:t1]): autograd joins the chunks' gradients once, where a slice per chunk
        # fills a zero gradient of the whole sequence for each chunk (8-16 % of a recurrent training step)
        chunks = zip(*(x.split(chunk_size, dim=1) for x in (dt, u, B, C)), strict=True)
        for dt_c, u_c, B_c, C_c in chunks:  # (b, K, d), (b, K, d), (b, K, n), (b, K, n)
            decay = torch.exp(dt_c.unsqueeze(-1) * A)  # (b, K, d, n)
            drive = (dt_c * u_c).unsqueeze(-1) * B_c.unsqueeze(2)  # (b, K, d, n)
            states = []
            # unbind (not drive[:, k]) so autograd sums one stack instead of K full-size zero-filled grads
            for drive_k, decay_k in zip(drive.unbind(1), decay.unbind(1), strict=True):
                h = torch.addcmul(drive_k, decay_k, h)
                states.append(h)
            hs = torch.stack(states, dim=1)  # (b, K, d, n)
            outs.append(torch.matmul(hs, C_c.unsqueeze(-1)).squeeze(-1))  # (b, K, d)
        y = torch.cat(outs, dim=1) if outs else u.new_zeros(batch, 0, d_inner)
        return _finish(y, u, D, z), h


@lru_cache(maxsize=1)
def _mamba_ssm_scan() -> Any:
    """mamba-ssm's fused selective scan, or None when it cannot be imported."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or its CUDA extension / triton failing to load
        return None
    return selective_scan_fn


def mamba_ssm_available() -> bool:
    """True when CUDA is present and mamba-ssm's kernel imports."""
    return torch.cuda.is_available() and _mamba_ssm_scan() is not None


def selective_scan_cuda(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """mamba-ssm's kernel on time-major tensors (it wants ``(batch, d, L)``); from a zero state."""
    fn = _mamba_ssm_scan()
    if fn is None:
        raise RuntimeError("mamba-ssm is not importable")

    def channel_major(x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).contiguous()

    y, last = fn(
        channel_major(u),
        channel_major(delta),
        A.float().contiguous(),
        channel_major(B),
        channel_major(C),
        None if D is None else D.float(),
        None if z is None else channel_major(z),
        None if delta_bias is None else delta_bias.float(),
        delta_softplus,
        return_last_state=True,
    )
    return y.transpose(1, 2), last


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = True,
    impl: str = "auto",
) -> torch.Tensor:
    """Scan from a zero state; ``impl``: auto (the CUDA kernel if usable, else chunked), chunked or ref."""
    if impl == "auto" and u.is_cuda and _mamba_ssm_scan() is not None:
        return selective_scan_cuda(u, delta, A, B, C, D, z, delta_bias, delta_softplus)[0]
    if impl in ("auto", "chunked"):
        return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus)[0]
    if impl == "ref":
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus)[0]
    raise ValueError(f"unknown scan implementation {impl!r}; known: {', '.join(SCAN_IMPLS)}")


def causal_conv_silu(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """Depthwise causal convolution then SiLU: ``(batch, L, d) -> (batch, L, d)``."""
    length = x.shape[1]
    return F.silu(conv(x.transpose(1, 2))[..., :length]).transpose(1, 2)


def ssm_inputs(
    x: torch.Tensor, x_proj: nn.Linear, dt_proj: nn.Linear, dt_rank: int, d_state: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input-dependent ``(dt (before bias), B, C)`` from the conv output ``x (batch, L, d_inner)``."""
    dt, B, C = torch.split(x_proj(x), [dt_rank, d_state, d_state], dim=-1)
    if callable(
        dt_proj.weight
    ):  # dynamically quantised (int8): its weight is a method; the layer, less its bias
        return dt_proj(dt) - dt_proj.bias(), B, C
    return F.linear(dt, dt_proj.weight), B, C


def init_dt_proj(dt_proj: nn.Linear, dt_rank: int, dt_min: float, dt_max: float, floor: float) -> None:
    """Mamba's Δ initialisation: softplus(bias) log-uniform in [dt_min, dt_max]."""
    std = dt_rank**-0.5
    nn.init.uniform_(dt_proj.weight, -std, std)
    dt = torch.exp(
        torch.rand(dt_proj.out_features) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
    )
    dt = dt.clamp(min=floor)
    with torch.no_grad():
        dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus


def s4d_real_log(d_inner: int, d_state: int) -> torch.Tensor:
    """``log A`` of the S4D-real initialisation: A[d, n] = n + 1."""
    return torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1)


class MambaMixer(nn.Module):
    """Mamba block mixer: ``forward(x (B, L, d_model)) -> (B, L, d_model)`` and a one-token ``step``."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = dt_rank if dt_rank else math.ceil(d_model / 16)
        self.scan_impl = "auto"
        d_inner = self.d_inner
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner, bias=True)
        init_dt_proj(self.dt_proj, self.dt_rank, dt_min, dt_max, dt_init_floor)
        self.A_log = nn.Parameter(s4d_real_log(d_inner, d_state))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)
        self.frozen = False  # freeze_for_inference: step's constants kept

    def scan(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Conv, input-dependent SSM parameters and selective scan: ``(B, L, d_inner)`` -> gated ``y``."""
        xc = causal_conv_silu(x, self.conv1d)
        dt, B, C = ssm_inputs(xc, self.x_proj, self.dt_proj, self.dt_rank, self.d_state)
        A = -torch.exp(self.A_log.float())
        bias = self.dt_proj.bias() if callable(self.dt_proj.bias) else self.dt_proj.bias  # int8: a method
        return selective_scan(xc, dt, A, B, C, self.D, z, bias, True, self.scan_impl)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self._fp32_for_inference(hidden):
            with torch.autocast(hidden.device.type, enabled=False):
                return self.forward(hidden.float())
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # (B, L, d_inner) each
        return self.out_proj(self.scan(x, z))

    def _fp32_for_inference(self, hidden: torch.Tensor) -> bool:
        """Whether this call leaves autocast: a frozen mixer (``freeze_for_inference``) computes in float32
        even under bf16 autocast. Its matmuls are small (one token per stream and step, d_model wide), where
        the casts cost more than bf16 saves, and the scans are float32 anyway; what bf16 speeds up in a
        served recurrent model is its stem and head (``models.precision``)."""
        return self.frozen and torch.is_autocast_enabled(hidden.device.type)

    def init_state(self, batch: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero ``(conv_state (B, d_inner, d_conv), ssm_state (B, d_inner, d_state))`` in float32."""
        conv_state = torch.zeros(batch, self.d_inner, self.d_conv, device=device)
        ssm_state = torch.zeros(batch, self.d_inner, self.d_state, device=device)
        return conv_state, ssm_state

    def freeze_for_inference(self) -> None:
        """Eval only, in place: keep the per-token constants of ``step`` (the conv taps and bias, ``A =
        -exp(A_log)``, ``D``, in float32) instead of deriving them on every call. The weights themselves and
        the state dict are unchanged; training afterwards would leave these copies stale. From then on the
        mixer computes in float32 under autocast too (``_fp32_for_inference``)."""
        bias = self.conv1d.bias
        constants = {
            "_conv_taps": self.conv1d.weight[:, 0, :],
            "_conv_bias": self.D.new_zeros(self.d_inner) if bias is None else bias,
            "_A": -torch.exp(self.A_log.float()),
            "_D_fp32": self.D,
        }
        for name, value in constants.items():
            self.register_buffer(name, value.detach().float().clone(), persistent=False)
        self.frozen = True

    def step(
        self, hidden: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One token ``hidden (B, d_model)`` -> ``(out (B, d_model), conv_state, ssm_state)``, all new."""
        if self._fp32_for_inference(hidden):
            with torch.autocast(hidden.device.type, enabled=False):
                return self.step(hidden.float(), conv_state, ssm_state)
        if self.frozen:
            return self._frozen_step(hidden, conv_state, ssm_state)
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # (B, d_inner)
        conv_state = torch.cat([conv_state[:, :, 1:], x.unsqueeze(-1).to(conv_state.dtype)], dim=-1)
        with torch.autocast(hidden.device.type, enabled=False):
            xc = (conv_state * self.conv1d.weight[:, 0, :].float()).sum(-1)
            if self.conv1d.bias is not None:
                xc = xc + self.conv1d.bias.float()
            xc = F.silu(xc)
        dt, B, C = torch.split(self.x_proj(xc), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = self.dt_proj(dt)
        with torch.autocast(hidden.device.type, enabled=False):
            dt = F.softplus(dt.float())  # (B, d_inner)
            A = -torch.exp(self.A_log.float())
            decay = torch.exp(dt.unsqueeze(-1) * A)
            ssm_state = decay * ssm_state + (dt * xc).unsqueeze(-1) * B.float().unsqueeze(1)
            y = (ssm_state * C.float().unsqueeze(1)).sum(-1) + self.D.float() * xc
            y = y * F.silu(z.float())
        return self.out_proj(y), conv_state, ssm_state

    def _frozen_step(
        self, hidden: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``step`` in float32 with the constants of ``freeze_for_inference`` and fused multiply-adds: the
        same arithmetic in fewer calls (a live step is mostly per-call overhead)."""
        x, z = self.in_proj(hidden).chunk(2, dim=-1)
        conv_state = torch.cat([conv_state[:, :, 1:], x.unsqueeze(-1).to(conv_state.dtype)], dim=-1)
        xc = F.silu((conv_state * self._conv_taps).sum(-1) + self._conv_bias)
        dt, B, C = torch.split(self.x_proj(xc), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt))
        decay = torch.exp(dt.unsqueeze(-1) * self._A)
        ssm_state = torch.addcmul((dt * xc).unsqueeze(-1) * B.unsqueeze(1), decay, ssm_state)
        y = torch.addcmul((ssm_state * C.unsqueeze(1)).sum(-1), self._D_fp32, xc) * F.silu(z)
        return self.out_proj(y), conv_state, ssm_state

    def forward_chunk(
        self, hidden: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``L`` tokens ``hidden (B, L, d_model)`` from explicit state in one call: ``(out (B, L, d_model),
        conv_state, ssm_state)``, equal to ``L`` calls of ``step`` (the chunked scan carries the state)."""
        if self._fp32_for_inference(hidden):
            with torch.autocast(hidden.device.type, enabled=False):
                return self.forward_chunk(hidden.float(), conv_state, ssm_state)
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # (B, L, d_inner)
        with torch.autocast(hidden.device.type, enabled=False):
            seq = torch.cat([conv_state[:, :, 1:], x.transpose(1, 2).to(conv_state.dtype)], dim=-1)
            conv_state = seq[:, :, -self.d_conv :]
            bias = None if self.conv1d.bias is None else self.conv1d.bias.float()
            xc = F.silu(F.conv1d(seq, self.conv1d.weight.float(), bias, groups=self.d_inner)).transpose(1, 2)
        dt, B, C = torch.split(self.x_proj(xc), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = self.dt_proj(dt)
        A = -torch.exp(self.A_log.float())
        y, ssm_state = selective_scan_chunked(xc, dt, A, B, C, self.D, z, None, True, ssm_state)
        return self.out_proj(y), conv_state, ssm_state


class MambaBlock(nn.Module):
    """Pre-norm residual block ``r + mixer(RMSNorm(r))`` (Mamba's Add -> Norm -> Mixer, unfused)."""

    def __init__(self, d_model: int, mixer: nn.Module, norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.mixer: nn.Module = mixer
        self.norm: nn.RMSNorm = nn.RMSNorm(d_model, eps=norm_eps)

    def forward(self, residual: torch.Tensor) -> torch.Tensor:
        return residual + self.mixer(self.norm(residual))


def rescale_out_proj(model: nn.Module, n_layers: int) -> None:
    """GPT-2-style init of every mixer ``out_proj``: kaiming-uniform scaled by ``1/sqrt(n_layers)``."""
    for name, p in model.named_parameters():
        if name.endswith("out_proj.weight"):
            nn.init.kaiming_uniform_(p, a=math.sqrt(5))
            with torch.no_grad():
                p.div_(math.sqrt(n_layers))
