"""streamd checkpoints: safetensors weights with the model's metadata as JSON in the header.

The header key ``streamd`` holds ``ModelInfo.to_dict()`` (architecture, config, labels, feature settings,
normalisation). Loading never unpickles anything.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from models.atomic_write import write_atomically
from models.common import ModelInfo
from models.metadata_check import check_metadata
from models.registry import build_model

FORMAT = "streamd-checkpoint/1"


class CheckpointLoadError(ValueError):
    """A checkpoint file cannot be used; the message names the file and the problem."""


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (hex): a checkpoint's identity, whatever its name or place."""
    import hashlib

    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(path: str | Path, model: nn.Module, info: ModelInfo) -> Path:
    """Write ``model``'s weights and ``info`` to ``path`` (a .safetensors file); ``ValueError`` for
    metadata that loading would refuse (``models.metadata_check``), before anything is written."""
    path = Path(path)
    problem = check_metadata(json.loads(json.dumps(info.to_dict())))
    if problem:
        raise ValueError(f"{path}: not saved: invalid metadata: {problem}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "streamd": json.dumps(info.to_dict())}
    try:
        return write_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    except SafetensorError as exc:  # the writer's I/O errors, as the OSError they are
        raise OSError(errno.EIO, f"cannot write the checkpoint ({exc})", str(path)) from None


def read_info(path: str | Path) -> ModelInfo:
    """Read only the metadata of a streamd checkpoint."""
    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointLoadError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    if meta.get("format") != FORMAT or "streamd" not in meta:
        raise CheckpointLoadError(f"{path}: not a streamd checkpoint (no '{FORMAT}' metadata)")
    try:
        data = json.loads(meta["streamd"])
        problem = check_metadata(data)
        if problem:
            raise CheckpointLoadError(f"{path}: invalid metadata: {problem}")
        return ModelInfo.from_dict(data)
    except CheckpointLoadError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointLoadError(f"{path}: corrupt streamd metadata ({exc})") from None


def nonfinite_weight(state: dict[str, torch.Tensor]) -> str | None:
    """What is wrong with the first weight holding NaN or infinite values, or None (every loader's check)."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            why = "a training run that diverged, or a damaged source"
            return f"weight {name} holds NaN or infinite values ({why})"
    return None


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelInfo]:
    """Build the model a checkpoint describes and load its weights (strict); returns it in eval mode."""
    path = Path(path)
    info = read_info(path)
    try:
        model = build_model(info.arch, info.config)
    except (ValueError, TypeError) as exc:
        raise CheckpointLoadError(f"{path}: cannot build model {info.arch!r} ({exc})") from None
    try:
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointLoadError(f"{path}: corrupt weights ({exc})") from None
    if problem := nonfinite_weight(state):
        raise CheckpointLoadError(f"{path}: {problem}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointLoadError(f"{path}: weights do not fit {info.arch!r}: {load_problem(exc)}") from None
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None and num_classes != len(info.labels):
        raise CheckpointLoadError(
            f"{path}: {len(info.labels)} labels but the model has {num_classes} outputs"
        )
    return model.to(device).eval(), info


def _check_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointLoadError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointLoadError(f"{path}: is a directory, not a checkpoint file")


def update_extra(path: str | Path, values: dict[str, object]) -> ModelInfo:
    """Merge ``values`` into a checkpoint's ``extra`` metadata; the weights are written back unchanged."""
    path = Path(path)
    info = read_info(path)
    info.extra.update(values)
    tensors = load_file(str(path))
    metadata = {"format": FORMAT, "streamd": json.dumps(info.to_dict())}
    write_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return info


def load_problem(exc: Exception, limit: int = 300) -> str:
    """PyTorch's ``load_state_dict`` error in one line: the keys missing, unexpected or of the wrong shape
    (its first line only says that loading failed)."""
    details = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
    text = " ".join(details) or str(exc).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
