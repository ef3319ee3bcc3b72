"""The resumable training state (safetensors: model, EMA, optimiser tensors; JSON header: epoch, step,
RNG, history, the config fingerprint). Nothing is pickled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from models.atomic_write import write_atomically
from training.ema import Ema
from training.resume import ResumeMismatch, check_resume, incompatible


def save_state(
    path: Path,
    model: nn.Module,
    ema: Ema,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    epoch: int,
    step: int,
    elapsed: float,
    history: list[dict[str, float]],
    config: dict[str, Any] | None = None,
) -> None:
    """Write a resumable training state: model, EMA and optimiser tensors, RNG, and a JSON header."""
    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous()
    for k, v in ema.model.state_dict().items():
        tensors[f"ema.{k}"] = v.detach().cpu().contiguous()
    opt_state = opt.state_dict()
    scalars: dict[str, dict[str, float]] = {}
    for pid, st in opt_state["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val) and val.ndim > 0:
                tensors[f"opt.{pid}.{key}"] = val.cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = float(val)
    tensors["rng.generator"] = gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # dropout on the GPU draws from its own
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    meta = {"epoch": epoch, "step": step, "elapsed": elapsed, "history": history, "opt_scalars": scalars}
    meta["config"] = config
    write_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata={"state": json.dumps(meta)}))


def load_state(
    path: Path,
    model: nn.Module,
    ema: Ema,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    config: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
    accept_data_change: bool = False,
) -> tuple[int, int, float, list[dict[str, float]]]:
    """Restore a state written by ``save_state``; returns (epoch, step, elapsed seconds, history).

    ``config`` is the run's fingerprint, checked against the saved one (``defaults``, ``accept_data_change``:
    see ``check_resume``).
    """
    try:  # a state damaged on disk (cut short, overwritten) is one line, not a traceback
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["state"])
        if not isinstance(meta, dict) or not isinstance(meta.get("opt_scalars"), dict):
            raise ValueError("no training state in its metadata")
    except Exception as exc:  # safetensors' own errors, OSError, KeyError, JSON errors alike
        raise ResumeMismatch(
            f"{path}: not a readable training state ({type(exc).__name__}: {str(exc)[:120]}); start over "
            "with --fresh"
        ) from None
    if config is not None:
        note = check_resume(path, meta.get("config"), config, defaults, accept_data_change)
        if note:
            print(f"{path}: {note}", flush=True)
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        ema.model.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    except RuntimeError as exc:
        raise incompatible(path, exc) from None
    opt_state = opt.state_dict()
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, key = k.split(".", 2)
            state.setdefault(int(pid), {})[key] = v
    for pid, sc in meta["opt_scalars"].items():
        for key, val in sc.items():
            state.setdefault(int(pid), {})[key] = torch.tensor(val)
    opt_state["state"] = state
    opt.load_state_dict(opt_state)
    gen.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():  # a GPU run resumed on the CPU has no use for it
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return int(meta["epoch"]), int(meta["step"]), float(meta["elapsed"]), list(meta["history"])
