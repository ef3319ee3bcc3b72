"""Checkpoint format (safetensors + JSON header) and the residual CNN's interface."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from models import FeatureConfig, ModelInfo, Normalization, build_model
from models.checkpoint import CheckpointLoadError, load_checkpoint, read_info, save_checkpoint

SMALL = {"num_classes": 5, "num_mel_bins": 64, "channels": [8, 16, 16, 32]}


def _info(**overrides) -> ModelInfo:
    values = {
        "arch": "resnet_cnn",
        "config": SMALL,
        "labels": ["a", "b", "c", "d", "e"],
        "features": FeatureConfig(num_mel_bins=64),
        "normalization": Normalization(-6.0, 5.5, 498),
    }
    values.update(overrides)
    return ModelInfo(**values)


def test_round_trip_keeps_logits_and_metadata(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet_cnn", SMALL).eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, _info())
    loaded, info = load_checkpoint(path)
    x = torch.randn(2, 498, 64)
    torch.testing.assert_close(loaded(x), model(x))
    assert info.labels == ["a", "b", "c", "d", "e"]
    assert info.features.num_mel_bins == 64
    assert info.normalization.mean == -6.0
    assert read_info(path).arch == "resnet_cnn"


def test_any_window_length_gives_logits():
    model = build_model("resnet_cnn", SMALL).eval()
    for frames in (48, 300, 1022):
        assert model(torch.randn(1, frames, 64)).shape == (1, 5)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable safetensors"),
        (b"\x00\x01garbage" * 10, "not a readable safetensors"),
    ],
)
def test_corrupt_file_is_reported(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointLoadError, match=message):
        load_checkpoint(path)


def test_foreign_safetensors_and_missing_file(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointLoadError, match="not a streamd checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointLoadError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointLoadError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_weights_of_another_architecture_are_rejected(tmp_path):
    model = build_model("resnet_cnn", SMALL)
    other = _info(config={**SMALL, "channels": [8, 16, 16, 64]})
    path = save_checkpoint(tmp_path / "m.safetensors", model, other)
    with pytest.raises(CheckpointLoadError, match=r"do not fit 'resnet_cnn': size mismatch for "):
        load_checkpoint(path)


def test_a_weight_missing_or_left_over_is_named(tmp_path):
    """The error says which weight is missing or unexpected, not only that loading failed."""
    model = build_model("resnet_cnn", SMALL)
    path = save_checkpoint(tmp_path / "m.safetensors", model, _info())
    weights, metadata = load_file(str(path)), safe_open(str(path), "pt").metadata()
    name = next(k for k in weights if k.endswith(".weight"))
    save_file({k: v for k, v in weights.items() if k != name}, str(path), metadata=metadata)
    with pytest.raises(CheckpointLoadError, match=f"Missing key.*{re.escape(name)}"):
        load_checkpoint(path)
    save_file({**weights, "extra.weight": torch.zeros(2)}, str(path), metadata=metadata)
    with pytest.raises(CheckpointLoadError, match=r"Unexpected key.*extra\.weight"):
        load_checkpoint(path)


def test_label_count_must_match_outputs(tmp_path):
    model = build_model("resnet_cnn", SMALL)
    path = save_checkpoint(tmp_path / "m.safetensors", model, _info(labels=["a", "b"]))
    with pytest.raises(CheckpointLoadError, match="2 labels but the model has 5 outputs"):
        load_checkpoint(path)


def test_truncated_checkpoint_is_reported(tmp_path):
    model = build_model("resnet_cnn", SMALL)
    path = save_checkpoint(tmp_path / "m.safetensors", model, _info())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointLoadError):
        load_checkpoint(path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_by_name(tmp_path, bad):
    """A checkpoint from a diverged run would score NaN everywhere: refused at load, naming the weight."""
    model = build_model("resnet_cnn", SMALL).eval()
    name, weight = next(iter(model.named_parameters()))
    with torch.no_grad():
        weight.view(-1)[3] = bad
    path = save_checkpoint(tmp_path / "m.safetensors", model, _info())
    with pytest.raises(CheckpointLoadError, match=f"weight {name} holds NaN or infinite values"):
        load_checkpoint(path)


def test_a_label_saved_decomposed_is_read_in_nfc(tmp_path):
    """A checkpoint trained on NFD folder names (macOS) names its classes as data read today does (NFC)."""
    nfd, nfc = "cafe\u0301", "caf\u00e9"
    path = save_checkpoint(tmp_path / "m.safetensors", build_model("resnet_cnn", SMALL), _info())
    weights, metadata = load_file(str(path)), safe_open(str(path), "pt").metadata()
    metadata["streamd"] = metadata["streamd"].replace('"a"', json.dumps(nfd), 1)
    save_file(weights, str(path), metadata=metadata)
    assert nfd in json.loads(metadata["streamd"])["labels"]
    assert read_info(path).labels[0] == nfc and load_checkpoint(path)[1].labels[0] == nfc
