"""Fine-tuning from a streamd checkpoint: settings taken from it, and its weights put into a new model.

``[model] init = "PATH"`` (or ``streamd train --init``) names any streamd checkpoint: a converted AST or
Audio-Mamba, an ImageNet-initialised AST (``streamd convert``), or a model streamd trained. Its weights
were trained on its features, so the experiment takes from it:

- the architecture and its config (``[model] arch`` / ``[model.config]`` may repeat them; a different
  value is an error, except ``dropout``; ``num_classes`` comes from the new data);
- the feature settings and the normalisation mean/std (``[features]`` / ``[normalization]`` may repeat
  them; a contradiction is an error); ``target_frames`` may differ: the window is adapted.

Weights: the backbone is copied; the head is kept when the new labels are the checkpoint's (rows
reordered if the order differs) and left freshly initialised otherwise; positional embeddings are adapted
to the new window (AST: the time axis cut from the centre when shorter, bilinear when longer; Audio-Mamba:
its bilinear resampling).

The file is loaded in full and its weights checked (``init_weights``) once per process: the settings
(``init_settings``, when a config is read), ``train --data``'s first look (``own_init.init_info``) and the
weights copied into each run's model (``load_init_weights``) share that check while the file is unchanged.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from audio_core.shipped_models import SHIPPED_MODELS, is_shipped_name, shipped_model_path
from models.ast import adapt_time_grid
from models.aum import resample_grid
from models.checkpoint import CheckpointLoadError, load_checkpoint, load_problem, nonfinite_weight
from models.common import FeatureConfig, ModelInfo, Normalization
from training.cache import file_identity

FREE_CONFIG_KEYS = ("num_classes", "target_frames", "dropout")  # may differ from the init checkpoint's


class InitError(ValueError):
    """The init checkpoint cannot start this experiment; the message is one line naming the conflict."""


@dataclass
class InitSettings:
    """What an experiment takes from its init checkpoint."""

    arch: str
    model_config: dict[str, Any]
    features: FeatureConfig
    normalization: Normalization


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return a == b


def _conflict(path: Path, key: str, given: Any, theirs: Any, why: str) -> InitError:
    return InitError(f"{key} = {given!r} contradicts the init checkpoint {path.name} ({theirs!r}): {why}")


def init_settings(path: str | Path, raw: dict[str, Any]) -> InitSettings:
    """The settings an experiment (parsed TOML ``raw``) gets from init checkpoint ``path`` (its weights
    checked as they are loaded, ``checked_info``: a bad one is refused when the config is read)."""
    path = Path(path)
    info = checked_info(path)
    model = raw.get("model", {})
    if model.get("arch") is not None and model["arch"] != info.arch:
        raise _conflict(path, "model.arch", model["arch"], info.arch, "the architecture comes from it")
    user_config = model.get("config", {})
    for key, value in user_config.items():
        if key not in FREE_CONFIG_KEYS and key in info.config and not _same(value, info.config[key]):
            raise _conflict(path, f"model.config.{key}", value, info.config[key], "its weights need it")
    config = {k: v for k, v in info.config.items() if k not in ("num_classes", "target_frames")}
    config.update({k: v for k, v in user_config.items() if k in FREE_CONFIG_KEYS})
    why = "its weights were trained on these features"
    for key, value in raw.get("features", {}).items():
        theirs = getattr(info.features, key, None)
        if not _same(value, theirs):
            raise _conflict(path, f"features.{key}", value, theirs, why)
    user_norm = raw.get("normalization", {})
    for key in ("mean", "std"):
        if key in user_norm and not _same(user_norm[key], getattr(info.normalization, key)):
            raise _conflict(
                path, f"normalization.{key}", user_norm[key], getattr(info.normalization, key), why
            )
    frames = int(user_norm.get("target_frames", info.normalization.target_frames))
    norm = Normalization(info.normalization.mean, info.normalization.std, frames)
    return InitSettings(info.arch, config, info.features, norm)


def adapt_positions(model: nn.Module, state: dict[str, torch.Tensor], info: ModelInfo) -> str | None:
    """Resize the checkpoint's positional embeddings in ``state`` to ``model``'s window; what was done."""
    old_frames, new_frames = int(info.config.get("target_frames", 0)), getattr(model.cfg, "target_frames", 0)
    if info.arch == "ast" and "pos_embed" in state:
        key, tokens = "pos_embed", 2
    elif info.arch == "aum" and "pos_embed.pos_embed" in state:
        key, tokens = "pos_embed.pos_embed", 1
    else:
        return None
    if old_frames == new_frames:
        return None
    old_grid, new_grid = model.cfg.grid(old_frames), model.cfg.grid(new_frames)
    pos = state[key]
    if info.arch == "ast":
        grid = pos[:, tokens:].transpose(1, 2).reshape(1, -1, *old_grid)
        grid = adapt_time_grid(grid, new_grid[1]).flatten(2).transpose(1, 2)
        rule = "cut from the centre" if new_grid[1] < old_grid[1] else "bilinear"
    else:
        grid = resample_grid(pos[:, tokens:], old_grid, new_grid)
        rule = "bilinear"
    state[key] = torch.cat([pos[:, :tokens], grid], dim=1)
    return f"positions {old_grid[0]}x{old_grid[1]} -> {new_grid[0]}x{new_grid[1]} ({rule})"


def _head_keys(state: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in state if k.startswith("head.")]


# file_identity -> metadata of a file whose weights passed
_CHECKED: dict[tuple[str, int, int, int, int], ModelInfo] = {}


def _file(path: Path) -> tuple[str, int, int, int, int] | None:
    try:
        return file_identity(path)
    except OSError:  # (the loader says what is wrong with it)
        return None


def init_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelInfo]:
    """The init checkpoint's weights and metadata, loaded as every command loads a checkpoint
    (``models.checkpoint.load_checkpoint``: metadata in bounds, weights that fit its model, none NaN or
    infinite); an ``InitError`` naming the file and the tensor otherwise, before any epoch trains on it.
    Once passed, the file (as it is now: path, size, modification time) is not checked again in this
    process (``checked_info``, ``load_init_weights``)."""
    key = _file(Path(path))
    try:
        model, info = load_checkpoint(path)
    except CheckpointLoadError as exc:
        raise InitError(f"init checkpoint {exc}") from None
    if key is not None:
        _CHECKED[key] = copy.deepcopy(info)
    return dict(model.state_dict()), info


def checked_info(path: str | Path) -> ModelInfo:
    """The init checkpoint's metadata, its weights checked by ``init_weights`` once per file per process
    (``init_info``, ``init_settings`` and ``load_init_weights`` all ask: one full load)."""
    key = _file(Path(path))
    if key in _CHECKED:
        return copy.deepcopy(_CHECKED[key])
    return init_weights(path)[1]


def _checked_weights(path: Path) -> tuple[dict[str, torch.Tensor], ModelInfo]:
    """``init_weights``, or the weights alone of a file it already passed (as they are stored)."""
    key = _file(path)
    if key not in _CHECKED:
        return init_weights(path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InitError(f"init checkpoint {path}: corrupt weights ({exc})") from None
    if problem := nonfinite_weight(state):  # what is copied is checked, whatever happened to the file since
        raise InitError(f"init checkpoint {path}: {problem}")
    return state, copy.deepcopy(_CHECKED[key])


def load_init_weights(model: nn.Module, path: str | Path, labels: list[str]) -> str:
    """Copy init checkpoint ``path`` into ``model`` (see the module docstring); returns a one-line report."""
    path = Path(path)
    state, info = _checked_weights(path)
    own = model.state_dict()
    # in the model's types, as its checkpoint's model holds them (the file may store others)
    state = {k: v.to(own[k].dtype) if k in own and v.is_floating_point() else v for k, v in state.items()}
    notes = [f"init from {path.name} ({info.arch})"]
    adapted = adapt_positions(model, state, info)
    if adapted:
        notes.append(adapted)
    if list(labels) == list(info.labels):
        notes.append("head kept (same labels)")
    elif sorted(labels) == sorted(info.labels):
        order = torch.tensor([info.labels.index(name) for name in labels])
        for key in _head_keys(state):
            state[key] = state[key][order]
        notes.append("head kept (same labels, reordered)")
    else:
        for key in _head_keys(state):
            state[key] = own[key]
        notes.append(f"head re-initialised ({len(info.labels)} labels -> {len(labels)} new)")
    mismatched = [k for k in own if k in state and state[k].shape != own[k].shape]
    if mismatched:
        k = mismatched[0]
        raise InitError(f"{path.name}: {k} is {tuple(state[k].shape)}, the model needs {tuple(own[k].shape)}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InitError(f"{path.name}: weights do not fit: {load_problem(exc)}") from None
    return "; ".join(notes)


def resolve_init(value: str | Path) -> Path:
    """An init checkpoint's path: a file, or the name of a model streamd ships (``default``, ...); a
    ``ValueError`` saying what was found instead when there is no such file."""
    path = shipped_model_path(str(value)) if is_shipped_name(str(value)) else Path(value)
    if is_shipped_name(str(value)) and not path.is_file():
        raise ValueError(f"the shipped model {value!r} is not installed ({path} is missing)")
    if path.is_dir():
        raise ValueError(f"{value}: is a folder, not a checkpoint file")
    if not path.is_file():
        names = ", ".join(SHIPPED_MODELS)
        raise ValueError(f"{value}: no such checkpoint file (nor a shipped model's name: {names})")
    return path
