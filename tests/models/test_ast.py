"""AST: parity with transformers' ASTForAudioClassification (random weights, 512 and 1024 frames, older and
current key names, safetensors and .bin), the official .pth layout, and positional-embedding adaptation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from models import convert_ast, weight_files
from models.ast import AST, ASTConfig

transformers = pytest.importorskip("transformers")

HF_SMALL = {"hidden_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 384}


def random_hf_ast(max_length: int, stride: int = 10, num_labels: int = 7, seed: int = 0):
    """A small transformers AST with every parameter random (its init leaves tokens and positions at zero)."""
    torch.manual_seed(seed)
    config = transformers.ASTConfig(
        **HF_SMALL,
        max_length=max_length,
        frequency_stride=stride,
        time_stride=stride,
        num_labels=num_labels,
        id2label={i: f"class {i}" for i in range(num_labels)},
        label2id={f"class {i}": i for i in range(num_labels)},
    )
    model = transformers.ASTForAudioClassification(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = 1.0 if name.endswith("layernorm.weight") or "layernorm_" in name else 0.0
            p.copy_(base + torch.randn_like(p) * 0.1)
    return model


def windows_of(real_windows: torch.Tensor, frames: int) -> torch.Tensor:
    """Real normalised fbanks fitted to ``frames``: two clips back to back when longer than one."""
    x = real_windows
    if frames > x.shape[1]:
        x = torch.cat([x, x.roll(1, dims=0)], dim=1)
    pad = frames - x.shape[1]
    return F.pad(x, (0, 0, 0, pad)) if pad > 0 else x[:, :frames]


def hf_logits(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_values=x).logits


def convert_dir(directory: Path) -> AST:
    state, hf_config, _ = weight_files.read_hf_dir(directory)
    converted = convert_ast.from_hf(state)
    return convert_ast.build(convert_ast.config_from_hf(hf_config, converted), converted)


@pytest.mark.parametrize("frames", [512, 1024])
def test_hugging_face_checkpoints_convert_to_equal_logits(frames, tmp_path, real_windows):
    hf = random_hf_ast(frames)
    x = windows_of(real_windows, frames)
    reference = hf_logits(hf, x)

    saved = tmp_path / "saved"  # save_pretrained: safetensors with the older per-layer names
    hf.save_pretrained(saved)
    state = load_file(str(saved / "model.safetensors"))
    assert any(".attention.attention.query." in k for k in state)

    legacy_bin = tmp_path / "bin"  # the same weights as pytorch_model.bin
    legacy_bin.mkdir()
    (legacy_bin / "config.json").write_text((saved / "config.json").read_text())
    torch.save(state, legacy_bin / "pytorch_model.bin")

    current = tmp_path / "current"  # the current names, as the model holds them in memory
    current.mkdir()
    (current / "config.json").write_text((saved / "config.json").read_text())
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(current / "model.safetensors"))
    assert any(".q_proj." in k for k in hf.state_dict())

    for directory in (saved, legacy_bin, current):
        model = convert_dir(directory)
        assert model.cfg.target_frames == frames and model.cfg.layer_norm_eps == 1e-12
        with torch.no_grad():
            logits = model(x)
        assert (logits - reference).abs().max() <= 1e-4, directory.name
        assert reference.abs().max() > 0.1


def test_stride_16_hugging_face_model_converts(tmp_path, real_windows):
    hf = random_hf_ast(512, stride=16, seed=1)
    hf.save_pretrained(tmp_path)
    model = convert_dir(tmp_path)
    assert (model.cfg.fstride, model.cfg.tstride) == (16, 16) and model.grid == (8, 32)
    x = windows_of(real_windows, 512)
    with torch.no_grad():
        assert (model(x) - hf_logits(hf, x)).abs().max() <= 1e-4


def test_hugging_face_labels_and_unknown_keys():
    hf = random_hf_ast(512, num_labels=3)
    assert convert_ast.hf_labels(json.loads(hf.config.to_json_string())) == ["class 0", "class 1", "class 2"]
    state = dict(hf.state_dict())
    state["audio_spectrogram_transformer.pooler.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="unexpected Hugging Face AST key"):
        convert_ast.from_hf(state)


def official_state(model: AST) -> dict[str, torch.Tensor]:
    """``model``'s weights under the official YuanGongND/ast .pth names (DataParallel, with timm heads)."""
    state: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key.startswith("head_norm."):
            state["module.mlp_head.0." + key.removeprefix("head_norm.")] = value
        elif key.startswith("head."):
            state["module.mlp_head.1." + key.removeprefix("head.")] = value
        else:
            state["module.v." + key] = value
    dim = model.cfg.embed_dim
    for head in ("head", "head_dist"):  # timm's distilled DeiT carries two ImageNet heads, unused by AST
        state[f"module.v.{head}.weight"] = torch.randn(1000, dim)
        state[f"module.v.{head}.bias"] = torch.randn(1000)
    return state


@pytest.mark.parametrize(("stride", "frames"), [(10, 512), (16, 1024)])
def test_official_pth_layout_loads_with_inferred_config(stride, frames, tmp_path, real_windows):
    torch.manual_seed(2)
    original = AST(
        ASTConfig(num_classes=50, size="tiny", target_frames=frames, fstride=stride, tstride=stride)
    ).eval()
    names = official_state(original)
    assert "module.v.blocks.11.attn.qkv.weight" in names and "module.mlp_head.1.weight" in names
    torch.save(names, tmp_path / "esc50.pth")

    state = weight_files.load_torch_state(tmp_path / "esc50.pth")
    assert convert_ast.is_official_layout(state) and not convert_ast.is_hf_layout(state)
    converted = convert_ast.from_official(state)
    config = convert_ast.config_from_state(converted)
    assert (config.size, config.embed_dim, config.depth, config.num_heads) == ("tiny", 192, 12, 3)
    assert (config.fstride, config.tstride, config.target_frames) == (stride, stride, frames)
    loaded = convert_ast.build(config, converted)
    x = real_windows[:2]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), original(x))


def test_pos_embed_is_cut_from_the_centre_for_shorter_windows(real_windows):
    """A 1024-frame model on 512 frames == a 512-frame model holding the centre 50 of its 101 columns."""
    torch.manual_seed(3)
    long = AST(ASTConfig(num_classes=5, size="custom", embed_dim=64, depth=2, num_heads=4)).eval()
    short = AST(
        ASTConfig(num_classes=5, size="custom", embed_dim=64, depth=2, num_heads=4, target_frames=512)
    )
    state = long.state_dict()
    grid = state["pos_embed"][:, 2:].reshape(1, 12, 101, 64)
    cut = grid[:, :, 50 - 25 : 50 - 25 + 50]  # the official recipe's centre cut
    state["pos_embed"] = torch.cat([state["pos_embed"][:, :2], cut.reshape(1, 600, 64)], dim=1)
    short.load_state_dict(state)
    x = windows_of(real_windows, 512)
    with torch.no_grad():
        torch.testing.assert_close(long(x), short.eval()(x))


def test_pos_embed_is_resized_bilinearly_for_longer_windows(real_windows):
    torch.manual_seed(4)
    short = AST(
        ASTConfig(num_classes=5, size="custom", embed_dim=64, depth=2, num_heads=4, target_frames=512)
    )
    long = AST(
        ASTConfig(num_classes=5, size="custom", embed_dim=64, depth=2, num_heads=4, target_frames=1024)
    )
    state = short.state_dict()
    grid = state["pos_embed"][:, 2:].reshape(1, 12, 50, 64).permute(0, 3, 1, 2)
    wide = F.interpolate(grid, size=(12, 101), mode="bilinear", align_corners=False)
    state["pos_embed"] = torch.cat(
        [state["pos_embed"][:, :2], wide.permute(0, 2, 3, 1).reshape(1, 1212, 64)], 1
    )
    long.load_state_dict(state)
    x = windows_of(real_windows, 1024)
    with torch.no_grad():
        torch.testing.assert_close(short.eval()(x), long.eval()(x))


def test_any_window_length_runs_and_498_frames_match_the_daemon_window(real_windows):
    model = AST(
        ASTConfig(num_classes=5, size="custom", embed_dim=64, depth=1, num_heads=4, target_frames=512)
    )
    with torch.no_grad():
        assert model.eval()(real_windows).shape == (4, 5)  # 498 frames: 49 columns cut from 50
        assert model(real_windows[:, :16]).shape == (4, 5)
    with pytest.raises(ValueError, match="at least 16 frames"):
        model(real_windows[:, :15])


def test_sizes_and_config_errors():
    assert (ASTConfig(size="small").embed_dim, ASTConfig(size="small").num_heads) == (384, 6)
    assert ASTConfig(size="base").embed_dim == 768
    with pytest.raises(ValueError, match="use size='custom'"):
        ASTConfig(size="tiny", embed_dim=100)
    with pytest.raises(ValueError, match="unknown AST size"):
        ASTConfig(size="huge")
    with pytest.raises(ValueError, match="divisible"):
        ASTConfig(size="custom", embed_dim=100, depth=2, num_heads=3)
    with pytest.raises(ValueError, match="cannot place 7"):
        convert_ast.infer_geometry(7)
