"""``streamd convert``: Hugging Face AST directories, official AST and AuM ``.pth`` files become streamd
checkpoints; a converted Hugging Face AST scores real clips through ``streamd classify`` as transformers
does on the same features; bad input is one clear line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from model_audio import ESC50_CSV, clip_paths, fbank_of, load_wave

from audio_core.windows import pad_with_silence, window_samples_for_frames
from models.ast import AST, ASTConfig
from models.aum import AuM, AuMConfig
from models.checkpoint import load_checkpoint, read_info
from models.common import DATASET_STATS
from streamd.cli import main

transformers = pytest.importorskip("transformers")

LABELS = ["dog bark", "rain", "siren", "clock tick", "crackling fire"]


def hf_directory(path: Path, frames: int = 512, mel_bins: int = 128) -> object:
    """A small random transformers AST saved with its preprocessor config (ESC-50 statistics)."""
    torch.manual_seed(0)
    config = transformers.ASTConfig(
        num_mel_bins=mel_bins,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        max_length=frames,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)},
    )
    model = transformers.ASTForAudioClassification(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(path)
    mean, std, _ = DATASET_STATS["esc50"]
    preprocessor = {"feature_extractor_type": "ASTFeatureExtractor", "max_length": frames, "mean": mean}
    preprocessor |= {"std": std, "num_mel_bins": mel_bins, "sampling_rate": 16000, "do_normalize": True}
    (path / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return model


def test_hugging_face_ast_through_classify_scores_as_transformers(tmp_path, capsys, esc50_root):
    hf = hf_directory(tmp_path / "hf")
    out = tmp_path / "converted.safetensors"
    assert main(["convert", str(tmp_path / "hf"), str(out)]) == 0
    info = read_info(out)
    assert info.arch == "ast" and info.labels == LABELS and not info.multi_label
    assert (info.normalization.mean, info.normalization.std) == DATASET_STATS["esc50"][:2]
    assert info.normalization.target_frames == 512
    assert info.extra == {"converted_from": "hf-ast", "source": "hf"}
    capsys.readouterr()

    clips = clip_paths(2, fold=3)
    argv = ["classify", *map(str, clips), "--checkpoint", str(out), "--json", "--top-k", "5"]
    assert main([*argv, "--precision", "fp32"]) == 0  # against transformers' fp32 (auto may pick bf16)
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(r["file"]).name for r in rows] == [c.name for c in clips]
    for clip, row in zip(clips, rows, strict=True):
        # a 5-s clip is shorter than the 512-frame window: streamd's one rule pads the audio with silence
        # to one window before the fbank (audio_core.windows.pad_with_silence), for every model
        wave = pad_with_silence(load_wave(clip), window_samples_for_frames(512, info.features))
        fbank = fbank_of(wave)
        assert fbank.shape[0] == 512
        x = info.normalization.apply(fbank).unsqueeze(0)
        with torch.no_grad():
            expected = torch.softmax(hf(input_values=x).logits[0], dim=-1)
        got = {item["label"]: item["score"] for item in row["labels"]}
        assert set(got) == set(LABELS)
        for i, label in enumerate(LABELS):
            assert abs(got[label] - float(expected[i])) <= 1e-5


def test_a_hugging_face_ast_of_64_mel_bins_is_served_its_own_features(tmp_path, capsys):
    """An AST whose config.json says 64 mel bins converted "successfully" into a checkpoint recording 128:
    every command then failed on it ("expected 64 mel bins, got 128"), and fine-tuning blamed the user's
    config. The features are the model's own; a preprocessor that disagrees with it is one line."""
    hf = hf_directory(tmp_path / "hf", mel_bins=64)
    out = tmp_path / "converted.safetensors"
    assert main(["convert", str(tmp_path / "hf"), str(out)]) == 0
    info = read_info(out)
    assert info.features.num_mel_bins == 64 == info.config["num_mel_bins"]
    clip = clip_paths(1, fold=3)[0]
    capsys.readouterr()
    assert main(["classify", str(clip), "--checkpoint", str(out), "--json", "--precision", "fp32"]) == 0
    got = {item["label"]: item["score"] for item in json.loads(capsys.readouterr().out)["labels"]}
    wave = pad_with_silence(load_wave(clip), window_samples_for_frames(512, info.features))  # one window
    x = info.normalization.apply(fbank_of(wave, info.features)).unsqueeze(0)
    with torch.no_grad():
        expected = torch.softmax(hf(input_values=x).logits[0], dim=-1)
    assert max(abs(got[label] - float(expected[i])) for i, label in enumerate(LABELS) if label in got) <= 1e-5
    pre = json.loads((tmp_path / "hf" / "preprocessor_config.json").read_text())
    (tmp_path / "hf" / "preprocessor_config.json").write_text(json.dumps({**pre, "num_mel_bins": 128}))
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "other.safetensors")]) != 0
    assert "config.json has 64 mel bins, preprocessor_config.json 128" in capsys.readouterr().err


def test_official_ast_pth_with_esc50_labels_and_dataset(tmp_path, esc50_root, real_windows):
    torch.manual_seed(1)
    cfg = ASTConfig(num_classes=50, size="custom", embed_dim=64, depth=2, num_heads=1, target_frames=512)
    original = AST(cfg).eval()
    state = {}
    for key, value in original.state_dict().items():
        if key.startswith(("head_norm.", "head.")):
            index = "0" if key.startswith("head_norm.") else "1"
            state[f"module.mlp_head.{index}.{key.split('.', 1)[1]}"] = value
        else:
            state[f"module.v.{key}"] = value
    torch.save(state, tmp_path / "esc50_fold1.pth")
    out = tmp_path / "ast.safetensors"
    argv = ["convert", str(tmp_path / "esc50_fold1.pth"), str(out), "--labels", str(ESC50_CSV)]
    assert main([*argv, "--dataset", "esc50"]) == 0
    model, info = load_checkpoint(out)
    assert info.labels[:3] == ["dog", "rooster", "pig"] and len(info.labels) == 50
    assert info.normalization.target_frames == 512 and info.extra["converted_from"] == "official-ast"
    assert model.cfg.num_heads == 1  # 64 dims: one 64-dim head, as DeiT's sizes have
    with torch.no_grad():
        torch.testing.assert_close(model(real_windows), original(real_windows))


def test_aum_pth_with_labels_and_statistics(tmp_path, real_windows):
    torch.manual_seed(2)
    cfg = AuMConfig(num_classes=3, size="custom", embed_dim=32, depth=2, variant="Bi-Bi", target_frames=256)
    original = AuM(cfg).eval()
    torch.save({"module." + k: v for k, v in original.state_dict().items()}, tmp_path / "aum.pth")
    (tmp_path / "labels.csv").write_text("index,name\n2,cat\n0,bird\n1,car horn\n")
    out = tmp_path / "aum.safetensors"
    argv = ["convert", str(tmp_path / "aum.pth"), str(out), "--labels", str(tmp_path / "labels.csv")]
    assert main([*argv, "--mean", "-5", "--std", "4", "--target-frames", "256"]) == 0
    model, info = load_checkpoint(out)
    assert info.arch == "aum" and info.labels == ["bird", "car horn", "cat"]
    assert (info.normalization.mean, info.normalization.std, info.normalization.target_frames) == (-5, 4, 256)
    assert model.cfg.variant == "Bi-Bi"
    with torch.no_grad():
        torch.testing.assert_close(model(real_windows), original(real_windows))


def one_line_error(capsys, argv: list[str], needle: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("streamd: error:") and needle in err, err
    assert "Traceback" not in err


def test_bad_input_is_one_clear_line(tmp_path, capsys):
    out = str(tmp_path / "out.safetensors")
    one_line_error(capsys, ["convert", str(tmp_path / "missing.pth"), out], "no such file")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pth")
    one_line_error(capsys, ["convert", str(tmp_path / "other.pth"), out], "unknown layout")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    junk = str(tmp_path / "junk.pth")
    one_line_error(capsys, ["convert", junk, out], f"error: {junk}: not a readable PyTorch")
    assert main(["convert", junk, out]) == 2 and capsys.readouterr().err.count(junk) == 1  # named once
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    one_line_error(capsys, ["convert", str(tmp_path / "junk.safetensors"), out], "not a readable safetensors")
    (tmp_path / "empty_dir").mkdir()
    one_line_error(capsys, ["convert", str(tmp_path / "empty_dir"), out], "no config.json")
    torch.manual_seed(3)
    aum = AuM(AuMConfig(num_classes=3, size="custom", embed_dim=32, depth=1, target_frames=256))
    torch.save(aum.state_dict(), tmp_path / "aum.pth")
    one_line_error(capsys, ["convert", str(tmp_path / "aum.pth"), out, "--dataset", "esc50"], "give --labels")
    (tmp_path / "two.csv").write_text("name\na\nb\n")
    argv = ["convert", str(tmp_path / "aum.pth"), out, "--labels", str(tmp_path / "two.csv")]
    one_line_error(capsys, [*argv, "--dataset", "esc50"], "2 labels but the model has 3 outputs")
    (tmp_path / "three.csv").write_text("name\na\nb\nc\n")
    argv = ["convert", str(tmp_path / "aum.pth"), out, "--labels", str(tmp_path / "three.csv")]
    one_line_error(capsys, argv, "no normalisation statistics")
    one_line_error(capsys, [*argv, "--mean", "-5"], "both --mean and --std")
    assert not Path(out).exists()


def test_values_loading_would_refuse_are_refused_before_anything_is_written(tmp_path, capsys):
    hf_directory(tmp_path / "hf", frames=128)
    capsys.readouterr()  # transformers' own progress lines
    out = tmp_path / "out.safetensors"
    src = str(tmp_path / "hf")
    one_line_error(
        capsys, ["convert", src, str(out), "--mean", "nan", "--std", "4"], "--mean must be a finite"
    )
    one_line_error(
        capsys, ["convert", src, str(out), "--mean", "-4", "--std", "inf"], "--std must be a positive"
    )
    one_line_error(capsys, ["convert", src, str(out), "--target-frames", "100000"], "[16, 6000]")
    one_line_error(capsys, ["convert", src, str(out), "--fstride", "12"], "drop --fstride/--tstride")
    one_line_error(capsys, ["convert", src, str(tmp_path)], "is a folder")
    assert not out.exists()
    assert not out.exists()
    assert main(["convert", src, str(out), "--target-frames", "6000"]) == 0  # the longest window loads
    assert read_info(out).normalization.target_frames == 6000


def test_a_checkpoint_is_not_written_with_metadata_loading_refuses(tmp_path):
    from models.checkpoint import save_checkpoint
    from models.common import FeatureConfig, ModelInfo, Normalization

    model = AST(
        ASTConfig(
            num_classes=2,
            num_mel_bins=128,
            target_frames=128,
            size="custom",
            embed_dim=32,
            depth=1,
            num_heads=2,
        )
    )
    info = ModelInfo(
        arch="ast",
        config={},
        labels=["a", "b"],
        features=FeatureConfig(),
        normalization=Normalization(mean=float("nan"), std=1.0, target_frames=128),
    )
    with pytest.raises(ValueError, match=r"normalization\.mean"):
        save_checkpoint(tmp_path / "x.safetensors", model, info)
    assert not list(tmp_path.iterdir())


def test_a_write_the_file_system_refuses_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    from safetensors import SafetensorError

    import models.checkpoint

    hf_directory(tmp_path / "hf", frames=128)
    capsys.readouterr()

    def refused(*args, **kwargs):  # what safetensors raises on a full or read-only file system
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(models.checkpoint, "save_file", refused)
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(tmp_path / "hf"), str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"streamd: error: {out}: cannot write the checkpoint (Error while serializing")
    assert err.count("\n") == 1 and "No space left" in err and not out.exists()


def _broken_copy(src: Path, dst: Path, mend) -> str:
    """A copy of the Hugging Face folder ``src`` with one thing broken by ``mend(dst)``."""
    import shutil

    shutil.copytree(src, dst)
    mend(dst)
    return str(dst)


def _edit_json(name: str, change) -> object:
    def mend(folder: Path) -> None:
        path = folder / name
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return mend


def test_malformed_hugging_face_folders_are_one_line_naming_the_file(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    hf_directory(tmp_path / "hf", frames=128)
    capsys.readouterr()
    src, out = tmp_path / "hf", str(tmp_path / "out.safetensors")

    def sharded(missing: bool, index: dict | None = None):
        def mend(folder: Path) -> None:
            state = load_file(str(folder / "model.safetensors"))
            (folder / "model.safetensors").unlink()
            if not missing:
                save_file(state, str(folder / "model-1.safetensors"))
            weight_map = {key: "model-1.safetensors" for key in state}
            (folder / "model.safetensors.index.json").write_text(
                json.dumps(index or {"weight_map": weight_map})
            )

        return mend

    def without_head(folder: Path) -> None:
        state = load_file(str(folder / "model.safetensors"))
        save_file(
            {k: v for k, v in state.items() if not k.startswith("classifier")},
            str(folder / "model.safetensors"),
        )

    cases = [
        (_edit_json("config.json", lambda c: [1, 2]), "config.json: expected a JSON object, got list"),
        (
            _edit_json("preprocessor_config.json", lambda c: [1]),
            "preprocessor_config.json: expected a JSON object",
        ),
        (
            _edit_json("preprocessor_config.json", lambda c: c | {"max_length": "abc"}),
            "max_length must be a finite number",
        ),
        (
            _edit_json("config.json", lambda c: c | {"hidden_size": 0}),
            "hidden_size must be a positive whole number",
        ),
        (
            _edit_json("config.json", lambda c: c | {"hidden_size": None}),
            "hidden_size must be a positive whole",
        ),
        (_edit_json("config.json", lambda c: c | {"id2label": ["a"]}), "id2label must map class indices"),
        (
            lambda f: (f / "model.safetensors").write_bytes(b"x" * 64),
            "model.safetensors: not a readable safetensors",
        ),
        (sharded(missing=True), "model-1.safetensors: missing (named by the folder's weight index)"),
        (sharded(missing=False, index={"shards": 1}), "index.json: no weight_map"),
        (without_head, "the weights have no classifier"),
        (
            _edit_json("preprocessor_config.json", lambda c: c | {"mean": float("nan")}),
            "mean must be a finite",
        ),
        (
            _edit_json("preprocessor_config.json", lambda c: c | {"max_length": -5}),
            "max_length must be a positive",
        ),
        (  # its own value is named, not an option the user never gave
            _edit_json("preprocessor_config.json", lambda c: c | {"std": 0.0}),
            "preprocessor_config.json: std must be a positive number of at most",
        ),
        (
            _edit_json("preprocessor_config.json", lambda c: c | {"mean": 1e9}),
            "preprocessor_config.json: mean must be a finite number within",
        ),
    ]
    for i, (mend, needle) in enumerate(cases):
        broken = _broken_copy(src, tmp_path / f"broken{i}", mend)
        one_line_error(capsys, ["convert", broken, out], needle)
    assert not Path(out).exists()
    relabelled = _broken_copy(
        src, tmp_path / "relabel", _edit_json("config.json", lambda c: c | {"id2label": [1]})
    )
    (tmp_path / "labels.csv").write_text("name\n" + "\n".join(LABELS) + "\n")
    assert main(["convert", relabelled, out, "--labels", str(tmp_path / "labels.csv")]) == 0  # replaced


def test_a_weight_mismatch_names_the_keys(tmp_path, capsys):
    cfg = ASTConfig(num_classes=3, target_frames=128, size="custom", embed_dim=32, depth=1, num_heads=1)
    state = {}
    for key, value in AST(cfg).state_dict().items():  # the official layout, without the blocks' norm1
        if key.startswith(("head_norm.", "head.")):
            index = "0" if key.startswith("head_norm.") else "1"
            state[f"module.mlp_head.{index}.{key.split('.', 1)[1]}"] = value
        elif "norm1" not in key:
            state[f"module.v.{key}"] = value
    torch.save(state, tmp_path / "ast.pth")
    (tmp_path / "three.csv").write_text("name\na\nb\nc\n")
    argv = ["convert", str(tmp_path / "ast.pth"), str(tmp_path / "o.safetensors")]
    assert main([*argv, "--labels", str(tmp_path / "three.csv"), "--dataset", "esc50"]) == 2
    err = capsys.readouterr().err
    assert 'Missing key(s) in state_dict: "blocks.0.norm1.weight"' in err and err.count("\n") == 1, err


def test_out_is_never_src_nor_replaced_without_force(tmp_path, capsys):
    hf_directory(tmp_path / "hf", frames=128)
    capsys.readouterr()
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(tmp_path / "hf"), str(out)]) == 0
    first = out.read_bytes()
    one_line_error(capsys, ["convert", str(tmp_path / "hf"), str(out)], "exists; give --force to replace it")
    assert out.read_bytes() == first
    assert main(["convert", str(tmp_path / "hf"), str(out), "--force", "--target-frames", "256"]) == 0
    assert read_info(out).normalization.target_frames == 256
    one_line_error(
        capsys, ["convert", str(out), str(tmp_path / "again.safetensors")], "already a streamd checkpoint"
    )
    weights = tmp_path / "hf" / "model.safetensors"
    before = weights.read_bytes()
    one_line_error(capsys, ["convert", str(weights), str(weights), "--force"], "is SRC itself")
    one_line_error(capsys, ["convert", str(tmp_path / "hf"), str(weights), "--force"], "is inside SRC")
    assert weights.read_bytes() == before
    fifo = tmp_path / "pipe"  # not a regular file: never replaced, even with --force (a device node alike)
    os.mkfifo(fifo)
    one_line_error(capsys, ["convert", str(tmp_path / "hf"), str(fifo), "--force"], "is not a regular file")
    assert fifo.is_fifo()
