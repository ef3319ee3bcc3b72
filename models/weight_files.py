"""Reading weight files as others publish them: a Hugging Face model folder (``config.json``,
``preprocessor_config.json``, single or sharded safetensors, ``pytorch_model.bin``) and ``torch.save``
files, never unpickling arbitrary objects. Every problem is a ``ValueError`` naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch


def read_hf_dir(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """``(state dict, config.json, preprocessor_config.json or {})`` of a Hugging Face model directory."""
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{directory}: no config.json (not a Hugging Face model directory)")
    hf = read_json_object(config_path)
    pre_path = directory / "preprocessor_config.json"
    pre = read_json_object(pre_path) if pre_path.is_file() else {}
    return read_hf_weights(directory), hf, pre


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file holding one object (a Hugging Face config); anything else is a ``ValueError`` naming it."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise ValueError(f"{path}: missing (named by the folder's weight index)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None


def read_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    """Weights of a Hugging Face directory: model.safetensors, sharded safetensors, or pytorch_model.bin."""
    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    legacy = directory / "pytorch_model.bin"
    if single.is_file():
        return _load_safetensors(single)
    if index.is_file():
        weight_map = read_json_object(index).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise ValueError(f"{index}: no weight_map of parameter names to shard files")
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            state.update(_load_safetensors(directory / shard))
        return state
    if legacy.is_file():
        return load_torch_state(legacy)
    raise ValueError(f"{directory}: no model.safetensors or pytorch_model.bin")


def load_torch_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``torch.save`` file, never unpickling arbitrary objects."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, ...
        raise ValueError(f"{path}: not a readable PyTorch weights file ({type(exc).__name__})") from None
    for key in ("state_dict", "model"):  # training checkpoints that wrap the weights
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: does not hold a state dict of tensors")
    return obj
