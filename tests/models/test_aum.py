"""Audio-Mamba: state dicts in AuM's key layout (with a DataParallel ``module.`` prefix) load and give the
logits of a plain re-statement of AuM's forward pass, for the three variants; positional resampling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models import convert_aum
from models.aum import AuM, AuMConfig, resample_grid
from models.mamba import selective_scan_ref
from models.weight_files import load_torch_state

SMALL = {"num_classes": 6, "size": "custom", "embed_dim": 32, "depth": 3, "target_frames": 256}


def randomised(model: AuM, seed: int) -> AuM:
    """Perturb every parameter so that both directions, all gates and all positions matter."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def direction(
    s: dict, p: str, x: torch.Tensor, z: torch.Tensor, conv: str, xp: str, dtp: str, A: str, D: str
):
    """One SSM direction of AuM's mixer on ``(B, L, d_inner)``: causal conv, projections, scan, gate."""
    length = x.shape[1]
    w, b = s[f"{p}{conv}.weight"], s[f"{p}{conv}.bias"]
    xc = F.silu(F.conv1d(x.transpose(1, 2), w, b, padding=w.shape[-1] - 1, groups=w.shape[0])[..., :length])
    xc = xc.transpose(1, 2)
    rank, n = s[f"{p}{dtp}.weight"].shape[1], s[f"{p}A_log"].shape[1]
    dt, B, C = torch.split(xc @ s[f"{p}{xp}.weight"].T, [rank, n, n], dim=-1)
    return xc, dt @ s[f"{p}{dtp}.weight"].T, B, C, -torch.exp(s[f"{p}{A}"]), s[f"{p}{D}"], s[f"{p}{dtp}.bias"]


def mixer_reference(s: dict, p: str, hidden: torch.Tensor, variant: str) -> torch.Tensor:
    x, z = (hidden @ s[f"{p}in_proj.weight"].T).chunk(2, dim=-1)
    xc, dt, B, C, A, D, bias = direction(s, p, x, z, "conv1d", "x_proj", "dt_proj", "A_log", "D")
    y = selective_scan_ref(xc, dt, A, B, C, D, z, bias)[0]
    if variant == "Fo-Bi":  # bimamba v1: reversed scan of the same conv output with A_b; summed
        A_b = -torch.exp(s[f"{p}A_b_log"])
        flip = [t.flip(1) for t in (xc, dt, B, C)]
        y = y + selective_scan_ref(flip[0], flip[1], A_b, flip[2], flip[3], D, z.flip(1), bias)[0].flip(1)
    elif variant == "Bi-Bi":  # bimamba v2: a second full set on the reversed sequence; averaged
        xb, dtb, Bb, Cb, Ab, Db, biasb = direction(
            s, p, x.flip(1), z.flip(1), "conv1d_b", "x_proj_b", "dt_proj_b", "A_b_log", "D_b"
        )
        y = (y + selective_scan_ref(xb, dtb, Ab, Bb, Cb, Db, z.flip(1), biasb)[0].flip(1)) / 2
    return y @ s[f"{p}out_proj.weight"].T


def aum_reference(s: dict, cfg: AuMConfig, fbank: torch.Tensor) -> torch.Tensor:
    """AuM's forward_features + head as written there: middle cls, prefix pos-embed, Add -> Norm -> Mixer."""
    image = fbank.transpose(1, 2).unsqueeze(1)
    stride = (cfg.fstride, cfg.tstride)
    x = F.conv2d(image, s["patch_embed.proj.weight"], s["patch_embed.proj.bias"], stride=stride)
    x = x.flatten(2).transpose(1, 2)
    batch, n, _ = x.shape
    pos = n // 2
    x = torch.cat([x[:, :pos], s["cls_token"].expand(batch, -1, -1), x[:, pos:]], dim=1)
    moved = torch.cat([x[:, pos : pos + 1], x[:, :pos], x[:, pos + 1 :]], dim=1)  # insert_to_prefix
    moved = moved + s["pos_embed.pos_embed"]
    x = torch.cat([moved[:, 1 : pos + 1], moved[:, :1], moved[:, pos + 1 :]], dim=1)  # insert_from_prefix
    residual, hidden = None, x
    for i in range(cfg.depth):
        residual = hidden if residual is None else residual + hidden
        hidden = mixer_reference(
            s, f"layers.{i}.mixer.", rms_norm(residual, s[f"layers.{i}.norm.weight"]), cfg.variant
        )
    out = rms_norm(residual + hidden, s["norm_f.weight"])
    return out[:, pos] @ s["head.weight"].T + s["head.bias"]


@pytest.mark.parametrize("variant", ["Fo-Fo", "Fo-Bi", "Bi-Bi"])
def test_aum_layout_with_module_prefix_loads_and_matches_the_reference(variant, tmp_path, real_windows):
    cfg = AuMConfig(**SMALL, variant=variant)
    original = randomised(AuM(cfg), seed=len(variant) + ord(variant[0]))
    torch.save({"module." + k: v for k, v in original.state_dict().items()}, tmp_path / "aum.pth")

    state = load_torch_state(tmp_path / "aum.pth")
    assert convert_aum.is_aum_layout(state)
    stripped = convert_aum.strip_module_prefix(state)
    config = convert_aum.config_from_state(stripped)
    assert (config.variant, config.embed_dim, config.depth, config.target_frames) == (variant, 32, 3, 256)
    loaded = convert_aum.build(config, stripped)

    x = real_windows[:2, :256]
    with torch.no_grad():
        logits = loaded(x)
        torch.testing.assert_close(logits, original(x))
        reference = aum_reference(original.state_dict(), cfg, x)
    assert (logits - reference).abs().max() <= 1e-4
    assert reference.abs().max() > 0.05


def test_state_dict_keys_are_aums():
    mixer_keys = {
        "Fo-Fo": set(),
        "Fo-Bi": {"A_b_log"},
        "Bi-Bi": {"A_b_log", "D_b", "conv1d_b.weight", "conv1d_b.bias", "x_proj_b.weight"}
        | {"dt_proj_b.weight", "dt_proj_b.bias"},
    }
    base = {"in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight"}
    base |= {"dt_proj.bias", "A_log", "D", "out_proj.weight"}
    for variant, extra in mixer_keys.items():
        keys = set(AuM(AuMConfig(**{**SMALL, "depth": 1}, variant=variant)).state_dict())
        top = {"patch_embed.proj.weight", "patch_embed.proj.bias", "pos_embed.pos_embed", "cls_token"}
        top |= {"layers.0.norm.weight", "norm_f.weight", "head.weight", "head.bias"}
        assert keys == top | {f"layers.0.mixer.{k}" for k in base | extra}, variant


def test_sizes():
    for size, dim in (("tiny", 192), ("small", 384), ("base", 768)):
        cfg = AuMConfig(size=size)
        assert (cfg.embed_dim, cfg.depth, cfg.d_state, cfg.d_conv, cfg.expand) == (dim, 24, 16, 4, 2)
    tiny = AuM(AuMConfig(size="tiny", depth=1, target_frames=1024))
    mixer = tiny.layers[0].mixer
    assert (mixer.d_inner, mixer.dt_rank) == (384, 12) and tiny.grid == (8, 64)
    assert tiny.pos_embed.pos_embed.shape == (1, 1 + 8 * 64, 192)
    with pytest.raises(ValueError, match="unknown AuM variant"):
        AuMConfig(variant="Bi-Fo")


def test_positional_grid_is_resampled_for_other_lengths(real_windows):
    """A 1024-frame model on 498 frames == a 498-frame model given AuM's antialiased bilinear resampling."""
    long = randomised(AuM(AuMConfig(**{**SMALL, "target_frames": 1024})), seed=5)
    short = AuM(AuMConfig(**{**SMALL, "target_frames": 498}))
    state = long.state_dict()
    pos = state["pos_embed.pos_embed"]
    grid = pos[:, 1:].reshape(1, 8, 64, 32).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(8, 31), mode="bilinear", antialias=True, align_corners=False)
    state["pos_embed.pos_embed"] = torch.cat(
        [pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 248, 32)], dim=1
    )
    short.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(long(real_windows), short.eval()(real_windows))
    assert torch.equal(resample_grid(pos[:, 1:], (8, 64), (8, 64)), pos[:, 1:])


def test_unsupported_aum_checkpoints_are_named():
    state = AuM(AuMConfig(**SMALL)).state_dict()
    with pytest.raises(ValueError, match="rotary"):
        convert_aum.config_from_state({**state, "rope.freqs_cos": torch.zeros(1)})
    with pytest.raises(ValueError, match="not an Audio-Mamba state dict"):
        convert_aum.config_from_state({k: v for k, v in state.items() if k != "cls_token"})
    with pytest.raises(ValueError, match="cannot place"):
        convert_aum.config_from_state(state, target_frames=300)
