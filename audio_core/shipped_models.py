"""The models streamd ships, by name: the one name -> file lookup of the daemon, classify and training.

The files live in the ``streamd`` package's ``default_models`` folder (package data); this module only
knows where, so that ``training`` can resolve ``--init default`` without importing the daemon.
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parents[1] / "streamd" / "default_models"
SHIPPED_MODELS: dict[str, str] = {
    "default": "default.safetensors",
    "recurrent": "default_recurrent.safetensors",
    "ast": "default_ast.safetensors",
}
MODEL_HELP = f"a shipped model ({', '.join(map(repr, SHIPPED_MODELS))}) or a model config TOML"


def is_shipped_name(name: str) -> bool:
    return name in SHIPPED_MODELS


def shipped_model_path(name: str, models_dir: Path = MODELS_DIR) -> Path:
    """Path of a shipped model by name (it may not be installed); ValueError for an unknown name."""
    if name not in SHIPPED_MODELS:
        raise ValueError(f"unknown model {name!r}: use {', '.join(SHIPPED_MODELS)} or a .toml model config")
    return models_dir / SHIPPED_MODELS[name]
