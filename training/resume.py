"""Resuming training safely: what a saved training state was made with, and refusing a different setup.

A training state (``train_state.safetensors``) records a fingerprint of the run's configuration: the model
(architecture, its config, labels), the features, the normalisation, the training settings that shape
the weights, and the training data (``data_digest``: the examples' count and a digest of their features
and targets, so that other clips in the same output folder are not trained on as a continuation).
Resuming under a different fingerprint would silently continue incompatible weights (or die in
``load_state_dict``); instead it is refused with one line naming what changed and pointing to
``--fresh``. The number of epochs, evaluation cadence, thread count, device and precision may change
between runs (a run started on a GPU in bf16 resumes on a CPU in fp32).

A setting added to streamd after a state was saved is absent from that state's fingerprint; the state
was trained as that setting's default does, so resuming with the default is allowed and any other value
is refused.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from models.common import ModelInfo

# free to change between runs: how long, how often validated, and where and in which precision it runs
# (``auto`` resolves per device: a run started on a GPU in bf16 resumes on a CPU without native bf16)
FREE_KEYS = ("epochs", "eval_every", "num_threads", "compute", "precision")


class ResumeMismatch(ValueError):
    """Saved training state does not match the configuration being trained."""


def fingerprint(cfg: Any, info: ModelInfo) -> dict[str, Any]:
    """The parts of a run that the saved weights and optimiser state depend on, as plain JSON values."""
    train = {k: v for k, v in asdict(cfg).items() if k not in FREE_KEYS}
    return json.loads(
        json.dumps(
            {
                "arch": info.arch,
                "model": info.config,
                "labels": list(info.labels),
                "features": info.features.to_dict(),
                "normalization": info.normalization.to_dict(),
                "train": train,
            },
            default=str,
        )
    )


def data_digest(*arrays: Any) -> dict[str, Any]:
    """What the training data is, for the fingerprint: the number of examples, a digest of their bytes
    (features and targets), so that a run is not resumed on other clips under the same settings, and a
    sketch (each example's feature mean and spread, plus a digest of the targets alone) that tells the
    same clips' features recomputed elsewhere (another CPU rounds differently) from other clips."""
    import hashlib

    import numpy as np

    h = hashlib.blake2b(digest_size=8)
    for array in arrays:
        a = np.ascontiguousarray(array.numpy() if hasattr(array, "numpy") else np.asarray(array))
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    out: dict[str, Any] = {"examples": len(arrays[0]), "digest": h.hexdigest()}
    if len(arrays) >= 2:
        x = np.asarray(arrays[0].numpy() if hasattr(arrays[0], "numpy") else arrays[0])
        flat = x.reshape(len(x), -1)
        t = hashlib.blake2b(digest_size=8)
        for array in arrays[1:]:
            a = np.ascontiguousarray(array.numpy() if hasattr(array, "numpy") else np.asarray(array))
            t.update(f"{a.dtype}{a.shape}".encode())
            t.update(memoryview(a).cast("B"))
        out["sketch"] = {
            "shape": list(x.shape),
            "targets": t.hexdigest(),
            "mean": [float(f"{v:.7g}") for v in flat.mean(axis=1, dtype=np.float64)],
            "std": [float(f"{v:.7g}") for v in flat.std(axis=1, dtype=np.float64)],
        }
    return out


# how far a recomputed example's feature mean and spread may move and still be the same clip: float
# rounding across CPUs moves them by about 1e-6 of the features' scale; another clip by far more
SKETCH_TOLERANCE = 1e-4


def same_data(saved: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether ``saved`` and ``current`` (``data_digest`` values) describe the same training examples:
    the same bytes, or (both sketched) the same count, shapes and targets with features equal up to
    rounding."""
    if saved == current or saved.get("digest") == current.get("digest"):
        return saved.get("examples") == current.get("examples")
    a, b = saved.get("sketch"), current.get("sketch")
    if not isinstance(a, dict) or not isinstance(b, dict):
        return False
    if (a.get("shape"), a.get("targets")) != (b.get("shape"), b.get("targets")):
        return False
    import numpy as np

    for key in ("mean", "std"):
        x, y = np.asarray(a.get(key, []), dtype=np.float64), np.asarray(b.get(key, []), dtype=np.float64)
        scale = max(1.0, float(np.abs(x).max(initial=0.0)))
        if x.shape != y.shape or not np.all(np.abs(x - y) <= SKETCH_TOLERANCE * scale):
            return False
    return True


def _field_defaults(cls: type) -> dict[str, Any]:
    """Each field of dataclass ``cls`` that has a default, by name (nested dataclasses as dicts)."""
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.default is not MISSING:
            value = f.default
        elif f.default_factory is not MISSING:
            value = f.default_factory()
        else:
            continue
        out[f.name] = asdict(value) if is_dataclass(value) else value
    return out


def setting_defaults(cfg: Any, info: ModelInfo) -> dict[str, Any]:
    """The defaults of the model's and training's settings, shaped like ``fingerprint``'s parts."""
    from models.registry import config_class

    model = _field_defaults(config_class(info.arch))
    train = {k: v for k, v in _field_defaults(type(cfg)).items() if k not in FREE_KEYS}
    return json.loads(json.dumps({"model": model, "train": train}, default=str))


_NO_DEFAULT = object()


def _differences(saved: Any, current: Any, prefix: str = "", defaults: Any = None) -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        known = defaults if isinstance(defaults, dict) else {}
        for key in sorted(set(saved) | set(current), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in saved and current[key] == known.get(key, _NO_DEFAULT):
                continue  # a setting newer than the state, at the default the state was trained with
            if key not in saved or key not in current:
                out.append(name)
            else:
                out += _differences(saved[key], current[key], name, known.get(key))
        return out
    if saved != current:
        if isinstance(saved, list) and len(saved) > 6:
            return [f"{prefix} (changed)"]
        return [f"{prefix}: {saved!r} -> {current!r}"]
    return []


def check_resume(
    path: Path,
    saved: dict[str, Any] | None,
    current: dict[str, Any],
    defaults: dict[str, Any] | None = None,
    accept_data_change: bool = False,
) -> str | None:
    """Raise ``ResumeMismatch`` (one line) when ``saved`` (a state's fingerprint) differs from ``current``.

    ``defaults`` (``setting_defaults``) lets a state predating a setting resume with that setting's default.
    Features recomputed on another machine (equal up to rounding) are the same data. With
    ``accept_data_change`` a differing data digest is allowed (everything else must still match);
    returns a note saying so, or None.
    """
    if saved is None:  # a state from before fingerprints: the weights' shapes are still checked on load
        return None
    for key in ("data", "init"):  # a state from before the data / the init checkpoint was fingerprinted
        if key not in saved:
            current = {k: v for k, v in current.items() if k != key}
    if isinstance(saved.get("train"), dict):  # a key made free later is no difference in an older state
        saved = {**saved, "train": {k: v for k, v in saved["train"].items() if k not in FREE_KEYS}}
    old, new = saved.get("data"), current.get("data")
    saved = {k: v for k, v in saved.items() if k != "data"}
    current = {k: v for k, v in current.items() if k != "data"}
    data_known = isinstance(old, dict) and isinstance(new, dict)
    changed = _differences(saved, current, defaults=defaults)  # settings first: they change the features too
    if changed:
        data = _data_change(old, new) if data_known and not same_data(old, new) else None
        _refuse(path, changed, data)
    if not data_known or same_data(old, new):
        return None
    if accept_data_change:
        return (
            f"resuming on different training data ({_data_change(old, new)}), as --accept-data-change asked"
        )
    reason = _data_change(old, new)
    if "sketch" not in old and old.get("examples") == new.get("examples"):
        reason += (
            " (a state saved before streamd told recomputed features from other clips: if the "
            "clips are the same, --accept-data-change resumes)"
        )
    raise ResumeMismatch(
        f"{path}: saved training state was made with different data ({reason}); "
        "start over with --fresh (or use another output folder)"
    )


def _data_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    if old.get("examples") != new.get("examples"):
        return f"{old.get('examples')} -> {new.get('examples')} training examples"
    return f"other features or labels for the {new.get('examples')} training examples"


def _refuse(path: Path, changed: list[str], data: str | None = None) -> None:
    """The one-line refusal naming the settings that changed (and the data, ``data``, when it did too)."""
    shown = "; ".join(changed[:4]) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
    if data:
        shown += f"; and the training data: {data}"
    raise ResumeMismatch(
        f"{path}: saved training state was made with a different configuration ({shown}); "
        "start over with --fresh (or use another output folder)"
    )


def incompatible(path: Path, exc: Exception) -> ResumeMismatch:
    """The one-line error for saved weights that do not fit the model (``load_state_dict`` failed)."""
    from models.checkpoint import load_problem

    why = load_problem(exc) if str(exc).strip() else type(exc).__name__
    return ResumeMismatch(
        f"{path}: saved training state does not fit this model ({why}); start over with --fresh"
    )


def interrupted_line(out_dir: Path | None, fresh: bool = False, since: float | None = None) -> str:
    """What Ctrl-C leaves behind: the newest training state under ``out_dir`` and its epoch, or nothing
    (``fresh``: the command had ``--fresh``, which must be left out to resume; ``since``: only states
    written since then, the command's start, count — with ``--fresh`` older ones are being thrown away)."""
    from safetensors import safe_open

    states = (
        sorted(out_dir.rglob("train_state.safetensors"), key=lambda p: p.stat().st_mtime) if out_dir else []
    )
    if since is not None:
        states = [p for p in states if p.stat().st_mtime >= since]
    if not states:
        return "interrupted: no training state was saved yet (one is saved at the end of every epoch)"
    state = states[-1]
    with safe_open(str(state), framework="pt") as f:
        epoch = json.loads((f.metadata() or {})["state"])["epoch"]
    return f"interrupted: training state after epoch {epoch} is saved in {state}; " + (
        "run the command again without --fresh to resume"
        if fresh
        else "run the same command again to resume (--fresh starts over)"
    )
