"""The Mamba mixer: sequential reference scan == chunked scan (values and gradients), step == forward,
and mamba-ssm's CUDA kernel == the torch path where both exist."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from models.mamba import (
    MambaMixer,
    mamba_ssm_available,
    selective_scan,
    selective_scan_chunked,
    selective_scan_cuda,
    selective_scan_ref,
)


def scan_inputs(
    batch: int, length: int, d_inner: int, d_state: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    return {
        "u": randn(batch, length, d_inner),
        "delta": randn(batch, length, d_inner) * 0.5 - 1.0,
        "A": -torch.exp(randn(d_inner, d_state)),  # a wide spread of decay rates
        "B": randn(batch, length, d_state),
        "C": randn(batch, length, d_state),
        "D": randn(d_inner),
        "z": randn(batch, length, d_inner),
        "delta_bias": randn(d_inner) * 0.1,
    }


@pytest.mark.parametrize("chunk_size", [1, 7, 16, 64, 500])
def test_chunked_scan_equals_reference(chunk_size):
    x = scan_inputs(2, 150, 24, 8)
    y_ref, h_ref = selective_scan_ref(**x)
    y, h = selective_scan_chunked(**x, chunk_size=chunk_size)
    assert y.shape == (2, 150, 24) and h.shape == (2, 24, 8)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h, h_ref, rtol=1e-5, atol=1e-5)


def test_chunked_scan_handles_harsh_decay_and_no_gate():
    """Very fast decays (exp(Δ·A) underflowing to 0) and optional D / z behave as in the reference."""
    x = scan_inputs(1, 40, 8, 4, seed=1)
    x["A"] = x["A"] * 1e4
    del x["z"], x["D"]
    y_ref, _ = selective_scan_ref(**x)
    y, _ = selective_scan_chunked(**x, chunk_size=8)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)


def test_initial_state_continues_a_split_sequence():
    """Scanning [a, b] at once equals scanning a, then b from a's last state."""
    x = scan_inputs(2, 60, 12, 6, seed=2)
    y_all, h_all = selective_scan_chunked(**x, chunk_size=16)
    first = {k: (v[:, :25] if v.dim() == 3 else v) for k, v in x.items()}
    second = {k: (v[:, 25:] if v.dim() == 3 else v) for k, v in x.items()}
    y1, h1 = selective_scan_ref(**first)
    y2, h2 = selective_scan_ref(**second, initial_state=h1)
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), y_all, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h2, h_all, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk_size", [1, 7, 64])
def test_chunked_scan_gradients_equal_reference(chunk_size):
    x = scan_inputs(2, 30, 8, 4, seed=3)
    grads = []
    for fn in (selective_scan_ref, partial(selective_scan_chunked, chunk_size=chunk_size)):
        leaves = {k: v.clone().requires_grad_(True) for k, v in x.items()}
        y, h = fn(**leaves)
        (y.square().sum() + h.sum()).backward()
        grads.append({k: v.grad for k, v in leaves.items()})
    for name in x:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-4, msg=name)


def test_mixer_forward_same_with_either_scan():
    torch.manual_seed(0)
    mixer = MambaMixer(32).eval()
    hidden = torch.randn(2, 50, 32)
    with torch.no_grad():
        mixer.scan_impl = "ref"
        reference = mixer(hidden)
        mixer.scan_impl = "chunked"
        fast = mixer(hidden)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)


def test_unknown_scan_impl_is_rejected():
    x = scan_inputs(1, 4, 2, 2)
    with pytest.raises(ValueError, match="unknown scan implementation"):
        selective_scan(**x, impl="magic")


def test_mixer_step_by_step_equals_forward():
    torch.manual_seed(1)
    mixer = MambaMixer(24, d_state=8, d_conv=4).eval()
    hidden = torch.randn(3, 40, 24)
    with torch.no_grad():
        full = mixer(hidden)
        conv_state, ssm_state = mixer.init_state(3)
        outs = []
        for t in range(hidden.shape[1]):
            out, conv_state, ssm_state = mixer.step(hidden[:, t], conv_state, ssm_state)
            outs.append(out)
    assert conv_state.shape == (3, mixer.d_inner, 4) and ssm_state.shape == (3, mixer.d_inner, 8)
    torch.testing.assert_close(torch.stack(outs, dim=1), full, rtol=1e-5, atol=1e-5)


def test_step_does_not_modify_the_state_it_is_given():
    torch.manual_seed(2)
    mixer = MambaMixer(16).eval()
    conv_state, ssm_state = (s + 1.0 for s in mixer.init_state(1))
    before = (conv_state.clone(), ssm_state.clone())
    with torch.no_grad():
        mixer.step(torch.randn(1, 16), conv_state, ssm_state)
    assert torch.equal(conv_state, before[0]) and torch.equal(ssm_state, before[1])


def test_parameter_names_follow_state_spaces_mamba():
    mixer = MambaMixer(64, d_state=16, d_conv=4, expand=2)
    shapes = {k: tuple(v.shape) for k, v in mixer.state_dict().items()}
    assert shapes == {
        "in_proj.weight": (256, 64),
        "conv1d.weight": (128, 1, 4),
        "conv1d.bias": (128,),
        "x_proj.weight": (4 + 32, 128),
        "dt_proj.weight": (128, 4),
        "dt_proj.bias": (128,),
        "A_log": (128, 16),
        "D": (128,),
        "out_proj.weight": (64, 128),
    }
    # S4D-real initialisation and Δ between dt_min and dt_max
    torch.testing.assert_close(-torch.exp(mixer.A_log[0]), -torch.arange(1.0, 17.0))
    dt = torch.nn.functional.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6


@pytest.mark.cuda
@pytest.mark.skipif(not mamba_ssm_available(), reason="needs CUDA and an importable mamba-ssm")
def test_mamba_ssm_kernel_equals_torch_path():
    x = {k: v.cuda() for k, v in scan_inputs(2, 300, 64, 16, seed=4).items()}
    y_kernel, h_kernel = selective_scan_cuda(**x)
    y_torch, h_torch = selective_scan_chunked(**x)
    torch.testing.assert_close(y_kernel, y_torch, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(h_kernel, h_torch, rtol=1e-3, atol=1e-3)
    mixer = MambaMixer(32).cuda().eval()
    hidden = torch.randn(2, 100, 32, device="cuda")
    with torch.no_grad():
        fast = mixer(hidden)
        mixer.scan_impl = "chunked"
        torch.testing.assert_close(fast, mixer(hidden), rtol=1e-3, atol=1e-3)
