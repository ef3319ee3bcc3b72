"""ImageNet ViT/DeiT -> AST initialisation, checked against AST's rule computed here: random DeiT/ViT models
built locally with transformers (no download) and a timm-layout state dict, through ``streamd convert``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from models.checkpoint import load_checkpoint, read_info

REPO = Path(__file__).resolve().parents[2]
DIM, SIDE = 32, 4  # a 64-px image of 16-px patches: a 4x4 grid
# audio grid with strides 16: 128 mel bins -> 8 rows (> 4: bilinear); 48 frames -> 3 columns (< 4: cut)
FRAMES, F_DIM, T_DIM = 48, 8, 3


def _convert(src: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "streamd", "convert", str(src), str(out), "--dataset", "esc50"]
    cmd += ["--target-frames", str(FRAMES), "--fstride", "16", "--tstride", "16", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)


def _expected_positions(image_pos: torch.Tensor, tokens: int) -> torch.Tensor:
    """AST's rule, written out: columns cut from the middle, then rows bilinear; tokens in front."""
    grid = image_pos[0, tokens:].reshape(SIDE, SIDE, DIM).permute(2, 0, 1)  # (D, rows, columns)
    start = SIDE // 2 - T_DIM // 2
    grid = grid[:, :, start : start + T_DIM]  # columns 1, 2, 3 of 0..3
    grid = F.interpolate(grid.unsqueeze(0), size=(F_DIM, T_DIM), mode="bilinear", align_corners=False)[0]
    prefix = image_pos[0, :2] if tokens == 2 else image_pos[0, :1].repeat(2, 1)
    return torch.cat([prefix, grid.permute(1, 2, 0).reshape(F_DIM * T_DIM, DIM)])


def _hf_model(kind: str) -> torch.nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    args = {
        "hidden_size": DIM,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 4 * DIM,
        "image_size": 16 * SIDE,
        "patch_size": 16,
    }
    if kind == "deit":
        return transformers.DeiTForImageClassificationWithTeacher(transformers.DeiTConfig(**args)).eval()
    return transformers.ViTForImageClassification(transformers.ViTConfig(**args)).eval()


@pytest.mark.parametrize("kind", ["deit", "vit"])
def test_hugging_face_image_model(tmp_path: Path, kind: str) -> None:
    hf = _hf_model(kind)
    hf.save_pretrained(tmp_path / kind)
    state = {k.removeprefix(f"{kind}."): v for k, v in hf.state_dict().items()}
    proc = _convert(tmp_path / kind, tmp_path / "ast.safetensors")
    assert proc.returncode == 0, proc.stderr
    assert "use it with streamd train --init" in proc.stdout
    model, info = load_checkpoint(tmp_path / "ast.safetensors")
    assert info.arch == "ast" and info.config["embed_dim"] == DIM and info.config["depth"] == 2
    assert info.normalization.target_frames == FRAMES and info.normalization.mean == pytest.approx(-6.6268077)
    # the patch projection: the sum over the three colour channels, bias kept, stride (16, 16)
    weight = state["embeddings.patch_embeddings.projection.weight"]
    expected = weight[:, 0:1] + weight[:, 1:2] + weight[:, 2:3]
    assert torch.allclose(model.patch_embed.proj.weight, expected, atol=1e-6)
    assert torch.equal(model.patch_embed.proj.bias, state["embeddings.patch_embeddings.projection.bias"])
    assert model.patch_embed.proj.stride == (16, 16)
    cls = state["embeddings.cls_token"]
    dist = state.get("embeddings.distillation_token", cls)  # ViT: the cls token copied
    assert torch.equal(model.cls_token, cls) and torch.equal(model.dist_token, dist)
    tokens = 2 if kind == "deit" else 1
    expected_pos = _expected_positions(state["embeddings.position_embeddings"], tokens)
    assert torch.allclose(model.pos_embed[0], expected_pos, atol=1e-6)
    # the transformer blocks: q, k, v fused, the rest as they are
    q, k, v = (state[f"layers.1.attention.{n}_proj.weight"] for n in "qkv")
    assert torch.equal(model.blocks[1].attn.qkv.weight, torch.cat([q, k, v]))
    assert torch.equal(model.blocks[1].mlp.fc2.weight, state["layers.1.mlp.fc2.weight"])
    assert torch.equal(model.norm.weight, state["layernorm.weight"])
    assert model.blocks[0].norm1.eps == hf.config.layer_norm_eps
    assert model(torch.randn(1, FRAMES, 128)).shape == (1, 1)


def _timm_state() -> dict[str, torch.Tensor]:
    """A ViT in timm's layout (no distillation token), random weights, with its ImageNet head."""
    gen = torch.Generator().manual_seed(1)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    state = {
        "cls_token": r(1, 1, DIM),
        "pos_embed": r(1, 1 + SIDE * SIDE, DIM),
        "patch_embed.proj.weight": r(DIM, 3, 16, 16),
        "patch_embed.proj.bias": r(DIM),
        "norm.weight": r(DIM),
        "norm.bias": r(DIM),
        "head.weight": r(1000, DIM),
        "head.bias": r(1000),
    }
    for i in range(2):
        p = f"blocks.{i}."
        state.update({p + n: r(DIM) for n in ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias")})
        state.update({p + "attn.qkv.weight": r(3 * DIM, DIM), p + "attn.qkv.bias": r(3 * DIM)})
        state.update({p + "attn.proj.weight": r(DIM, DIM), p + "attn.proj.bias": r(DIM)})
        state.update({p + "mlp.fc1.weight": r(4 * DIM, DIM), p + "mlp.fc1.bias": r(4 * DIM)})
        state.update({p + "mlp.fc2.weight": r(DIM, 4 * DIM), p + "mlp.fc2.bias": r(DIM)})
    return state


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_image_model(tmp_path: Path, suffix: str) -> None:
    state = _timm_state()
    src = tmp_path / f"vit{suffix}"
    if suffix == ".pth":
        torch.save({"model": state}, src)
    else:
        save_file(state, str(src))
    proc = _convert(src, tmp_path / "ast.safetensors")
    assert proc.returncode == 0, proc.stderr
    model, info = load_checkpoint(tmp_path / "ast.safetensors")
    assert info.extra["converted_from"] == "imagenet-timm" and info.config["layer_norm_eps"] == 1e-6
    assert torch.allclose(
        model.patch_embed.proj.weight, state["patch_embed.proj.weight"].sum(1, keepdim=True)
    )
    assert torch.equal(model.dist_token, state["cls_token"])
    assert torch.allclose(model.pos_embed[0], _expected_positions(state["pos_embed"], 1), atol=1e-6)
    for key in ("blocks.1.attn.qkv.weight", "blocks.0.mlp.fc1.bias", "norm.weight"):
        assert torch.equal(model.state_dict()[key], state[key]), key


def test_longer_window_is_bilinear_on_both_axes(tmp_path: Path) -> None:
    from models.convert_vit import audio_positions

    pos = torch.randn(1, 2 + SIDE * SIDE, DIM)
    out = audio_positions(pos, 2, (6, 9))
    grid = pos[0, 2:].reshape(SIDE, SIDE, DIM).permute(2, 0, 1).unsqueeze(0)
    grid = F.interpolate(grid, size=(SIDE, 9), mode="bilinear", align_corners=False)
    grid = F.interpolate(grid, size=(6, 9), mode="bilinear", align_corners=False)
    assert torch.allclose(out[0, 2:], grid[0].permute(1, 2, 0).reshape(54, DIM), atol=1e-6)


def test_the_initialisation_starts_fine_tuning(tmp_path: Path) -> None:
    save_file(_timm_state(), str(tmp_path / "vit.safetensors"))
    assert _convert(tmp_path / "vit.safetensors", tmp_path / "ast.safetensors").returncode == 0
    from models.registry import build_model
    from training.init_from import load_init_weights

    info = read_info(tmp_path / "ast.safetensors")
    model = build_model("ast", {**info.config, "num_classes": 3})
    report = load_init_weights(model, tmp_path / "ast.safetensors", ["a", "b", "c"])
    assert "head re-initialised (1 labels -> 3 new)" in report
    from streamd.errors import CheckpointError
    from streamd.model_loading import load_model

    with pytest.raises(
        CheckpointError, match=r"an initialisation with an untrained head .*streamd train --init"
    ):
        load_model(tmp_path / "ast.safetensors", compute="cpu")  # what classify/replay/run would serve


def test_not_an_image_model_is_one_line(tmp_path: Path) -> None:
    state = _timm_state()
    state["patch_embed.proj.weight"] = torch.randn(DIM, 3, 8, 8)
    save_file(state, str(tmp_path / "vit8.safetensors"))
    proc = _convert(tmp_path / "vit8.safetensors", tmp_path / "ast.safetensors")
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1
    assert "only 16x16 patches are supported" in proc.stderr


def test_converted_weights_holding_nan_are_not_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """They were written without a word (``--init`` then trained on NaN); now the checkpoint is loaded back
    as ``classify`` loads one before it takes OUT's name: one line naming the tensor, nothing written."""
    from streamd.cli import main

    state = _timm_state()
    state["blocks.0.attn.qkv.weight"][1, 2] = float("nan")
    src = tmp_path / "vit.safetensors"
    save_file(state, str(src))
    out = tmp_path / "ast.safetensors"
    argv = ["convert", str(src), str(out), "--dataset", "esc50", "--target-frames", str(FRAMES)]
    assert main([*argv, "--fstride", "16", "--tstride", "16"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"streamd: error: {out}: not saved: weight blocks.0.attn.qkv.weight holds NaN or infinite values"
    )
    assert err.count("\n") == 1 and sorted(tmp_path.iterdir()) == [src]  # no temporary file left either
    state["blocks.0.attn.qkv.weight"][1, 2] = 0.0
    save_file(state, str(src))
    assert main([*argv, "--fstride", "16", "--tstride", "16"]) == 0 and sorted(tmp_path.iterdir()) == [
        out,
        src,
    ]


def test_a_labels_file_that_cannot_be_read_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An image model takes no labels, yet a --labels that names nothing (or a folder, or no text) was
    passed over and the checkpoint written: now one line, exit 2, nothing written."""
    from streamd.cli import main

    src = tmp_path / "vit.safetensors"
    save_file(_timm_state(), str(src))
    out = tmp_path / "ast.safetensors"
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00label\n\x80\x81\n")
    argv = ["convert", str(src), str(out), "--dataset", "esc50", "--target-frames", str(FRAMES)]
    cases = {"missing.csv": "no such labels file", ".": "is a folder", "binary.csv": "not UTF-8 text"}
    for name, needle in cases.items():
        labels = tmp_path / name
        assert main([*argv, "--labels", str(labels)]) == 2
        err = capsys.readouterr().err
        assert err == f"streamd: error: {labels}: {needle}" + err.split(needle, 1)[1] and err.count("\n") == 1
        assert not out.exists()


def test_labels_given_for_an_image_model_are_refused_not_dropped(tmp_path: Path) -> None:
    """``--labels`` and ``--multi-label`` were dropped without a word: the head is untrained, its labels
    those of the data ``--init`` fine-tunes it on."""
    src = tmp_path / "vit.safetensors"
    save_file(_timm_state(), str(src))
    labels = tmp_path / "labels.csv"
    labels.write_text("index,mid,display_name\n0,/m/0,dog\n1,/m/1,rain\n")
    for extra, named in ((["--labels", str(labels)], "--labels"), (["--multi-label"], "--multi-label")):
        proc = _convert(src, tmp_path / "ast.safetensors", *extra)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert named in proc.stderr and "does not apply" in proc.stderr
    assert not (tmp_path / "ast.safetensors").exists()
