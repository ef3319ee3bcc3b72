"""Model registry: architecture name -> (config dataclass, model class), built from plain dicts."""

from __future__ import annotations

import importlib
from dataclasses import asdict, fields, is_dataclass
from typing import Any

from torch import nn

# arch name -> "module:ConfigClass:ModelClass" (imported lazily so unused models cost nothing)
_ARCHS: dict[str, str] = {
    "piczak_cnn": "models.cnn_piczak:PiczakConfig:PiczakCNN",
    "resnet_cnn": "models.cnn_resnet:ResNetConfig:ResNetCNN",
    "ast": "models.ast:ASTConfig:AST",
    "aum": "models.aum:AuMConfig:AuM",
    "streaming_mamba": "models.streaming_mamba:StreamingMambaConfig:StreamingMamba",
}


def available_archs() -> list[str]:
    return sorted(_ARCHS)


def _resolve(arch: str) -> tuple[type, type]:
    if arch not in _ARCHS:
        raise ValueError(f"unknown model architecture {arch!r}; known: {', '.join(available_archs())}")
    module_name, cfg_name, model_name = _ARCHS[arch].split(":")
    module = importlib.import_module(module_name)
    return getattr(module, cfg_name), getattr(module, model_name)


def config_class(arch: str) -> type:
    return _resolve(arch)[0]


def make_config(arch: str, values: dict[str, Any]) -> Any:
    """Build ``arch``'s config dataclass from ``values``, rejecting unknown keys."""
    cfg_cls, _ = _resolve(arch)
    names = {f.name for f in fields(cfg_cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown {arch} config keys: {sorted(unknown)}; known: {sorted(names)}")
    return cfg_cls(**values)


def build_model(arch: str, config: dict[str, Any] | Any) -> nn.Module:
    """Instantiate ``arch`` from a config dict or its config dataclass."""
    cfg_cls, model_cls = _resolve(arch)
    cfg = config if isinstance(config, cfg_cls) else make_config(arch, dict(config))
    return model_cls(cfg)


def config_to_dict(config: Any) -> dict[str, Any]:
    if is_dataclass(config):
        return asdict(config)
    return dict(config)
