"""Finding and loading the classifier the daemon runs: ``--model NAME|CONFIG.toml`` and ``--checkpoint PATH``.

``default`` and ``recurrent`` name the models shipped in ``streamd/default_models``; a ``.toml`` file names
a checkpoint in its ``[model]`` table (see ``streamd.config``); ``--checkpoint`` overrides both.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from audio_core.shipped_models import MODELS_DIR
from audio_core.shipped_models import shipped_model_path as shipped_path
from audio_core.windows import checkpoint_window_s
from models.checkpoint import CheckpointLoadError, load_checkpoint
from models.common import UNTRAINED_LABEL, ModelInfo, is_recurrent
from models.inference import prepare_for_inference
from models.precision import PRECISIONS, choose_precision
from streamd.config_sections import ModelSection
from streamd.errors import CheckpointError, ConfigError

DEFAULT_MODELS_DIR = MODELS_DIR  # a module attribute, so that tests can point it elsewhere


@dataclass
class LoadedModel:
    """A model ready to run: weights on ``device`` in eval mode, its metadata, and how to run it."""

    model: nn.Module
    info: ModelInfo
    name: str
    device: torch.device
    precision: str = "fp32"  # "fp32" | "bf16" (autocast) | "int8" (dynamic int8 linear layers)
    path: Path | None = None
    precision_reason: str = "asked for"  # why (``models.precision``): shown in status and dashboard

    @property
    def recurrent(self) -> bool:
        return is_recurrent(self.model)

    @property
    def column_frames(self) -> int:
        return int(getattr(self.model, "column_frames", 0))


def shipped_model_path(name: str) -> Path:
    """Path of a shipped model by name (it may not be installed)."""
    try:
        return shipped_path(name, DEFAULT_MODELS_DIR)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def resolve_device(compute: str) -> torch.device:
    """``audio_core.compute``'s rule, its error a ``ConfigError`` (``cuda`` without a CUDA device)."""
    from audio_core.compute import ComputeError
    from audio_core.compute import resolve_device as device_for

    try:
        return device_for(compute)
    except ComputeError as exc:
        raise ConfigError(str(exc)) from None


def load_model(
    path: str | Path, *, compute: str = "auto", precision: str = "auto", name: str | None = None
) -> LoadedModel:
    """Load a streamd checkpoint for inference; every failure is a one-line ``CheckpointError``."""
    path = Path(path)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = resolve_device(compute)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        model, info = load_checkpoint(path, device=device)
    except CheckpointLoadError as exc:
        raise CheckpointError(str(exc)) from None
    if not info.labels:
        raise CheckpointError(f"{path}: the checkpoint has no labels")
    if info.labels == [UNTRAINED_LABEL]:  # what `convert` makes of a model without a usable head
        raise CheckpointError(
            f"{path}: an initialisation with an untrained head (made by streamd convert), not a classifier: "
            f"fine-tune it first (streamd train --init {path}, docs/fine-tuning.md)"
        )
    try:
        choice = choose_precision(precision, device.type, info.extra)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    model = prepare_for_inference(model, choice.precision)
    return LoadedModel(
        model, info, name or model_name(info, path), device, choice.precision, path, choice.reason
    )


def model_name(info: ModelInfo, path: Path) -> str:
    """What messages call a checkpoint's model: the name training gave it (``extra.name``: ``streamd train
    --data`` names it after the data set), else the file's stem."""
    named = info.extra.get("name")
    return named.strip() if isinstance(named, str) and named.strip() else path.stem


def load_named_model(name: str, *, compute: str = "auto", precision: str = "auto") -> LoadedModel:
    """Load a shipped model by name, with a clear message when it is not installed."""
    path = shipped_model_path(name)
    if not path.exists():
        raise CheckpointError(
            f"the {name!r} model is not installed ({path.name} missing in streamd/default_models); "
            "pass --checkpoint PATH or --model CONFIG.toml"
        )
    return load_model(path, compute=compute, precision=precision, name=name)


def load_configured_model(section: ModelSection) -> LoadedModel:
    """The model a ``[model]`` config section asks for: its checkpoint if set, else the shipped one."""
    if section.checkpoint:
        return load_model(section.checkpoint, compute=section.compute, precision=section.precision)
    return load_named_model(section.name, compute=section.compute, precision=section.precision)


def resolve_model(
    args: argparse.Namespace, *, compute: str | None = None, daemon_config: bool = False
) -> LoadedModel:
    """The model a command's ``--model`` / ``--checkpoint`` (and ``--compute``, ``--precision`` where it
    has them; ``--config`` when ``daemon_config``, i.e. it names a daemon config) name, layered as the
    daemon config is: the one rule of run, replay, classify and evaluate. ``compute`` replaces the
    configured device unless ``--compute`` is given.
    """
    from streamd.config_cli import config_from_args

    keys = ("model", "checkpoint", "compute", "precision") + (("config",) if daemon_config else ())
    section = config_from_args(argparse.Namespace(**{k: getattr(args, k, None) for k in keys})).model
    if compute is not None and getattr(args, "compute", None) is None:
        section = replace(section, compute=compute)
    return load_configured_model(section)


def window_warnings(
    window_s: float | None, hop_s: float | None, loaded: LoadedModel, *, hop_given: bool = False
) -> list[str]:
    """Warnings about the windows asked for (``window_s`` None: the checkpoint's own): a length other than
    the one the model was trained on, a hop longer than the window (audio between windows is never
    classified), a window given to a recurrent model (it steps per column), or a hop (``hop_given``:
    the daemon's, which a recurrent model's one result per column ignores)."""
    if loaded.recurrent:
        features = loaded.info.features
        column_s = loaded.column_frames * features.frame_shift / features.sample_rate
        given = [what for what, asked in (("window", window_s is not None), ("hop", hop_given)) if asked]
        return [
            f"a {what} does not apply to the recurrent model {loaded.name}: a result each {column_s:g} s"
            for what in given
        ]
    out = []
    own = checkpoint_window_s(loaded.info)
    window = own if window_s is None else window_s
    if abs(window - own) >= 0.5 / loaded.info.features.sample_rate:
        out.append(f"window {window:g} s differs from the {own:g} s the model {loaded.name} was trained on")
    if hop_s is not None and hop_s > window:
        out.append(
            f"hop {hop_s:g} s is longer than the window {window:g} s: "
            f"{hop_s - window:g} s of every hop is not classified"
        )
    return out
