"""The fine-tuning recipe: what ``--init`` changes in a from-scratch training recipe.

A pretrained backbone needs fewer epochs and a lower learning rate than training from scratch, and its
new head should learn faster than the backbone it sits on (the AST and Audio-Mamba fine-tuning recipes
train 25-30 epochs at a fraction of the from-scratch rate). When a from-scratch recipe is started with
``--init``, these values replace its ``[train]`` ones; ``--set train.KEY=...`` still wins, and a config
that names ``[model] init`` itself is a fine-tuning recipe already: only the keys it leaves out are filled.
"""

from __future__ import annotations

from typing import Any

from training.train_config import TrainConfig

MAX_EPOCHS = 20
LR_FACTOR = 0.5
MAX_WARMUP_EPOCHS = 1.0
BACKBONE_LR_SCALE = 0.25


def finetune_train_table(train: dict[str, Any], keep: set[str]) -> tuple[dict[str, Any], list[str]]:
    """``train`` with the recipe's values for every key not in ``keep``; and what changed, as notes."""
    base = TrainConfig()
    current = {
        "epochs": train.get("epochs", base.epochs),
        "lr": train.get("lr", base.lr),
        "warmup_epochs": train.get("warmup_epochs", base.warmup_epochs),
        "backbone_lr_scale": train.get("backbone_lr_scale", base.backbone_lr_scale),
    }
    recipe = {
        "epochs": min(int(current["epochs"]), MAX_EPOCHS),
        "lr": float(current["lr"]) * LR_FACTOR,
        "warmup_epochs": min(float(current["warmup_epochs"]), MAX_WARMUP_EPOCHS),
        "backbone_lr_scale": BACKBONE_LR_SCALE,
    }
    out, notes = dict(train), []
    for key, value in recipe.items():
        if key in keep or value == current[key]:
            continue
        out[key] = value
        notes.append(f"{key} {current[key]:g} -> {value:g}")
    return out, notes


def with_init(
    data: dict[str, Any], init: str | None, overridden: set[str] = frozenset()
) -> tuple[dict[str, Any], list[str]]:
    """A parsed experiment TOML set to start from ``init`` (or its own ``[model] init``), with the recipe.

    Returns the new document and notes on what the recipe changed (empty without an init checkpoint);
    ``overridden`` names the keys (``train.epochs``) that ``--set`` gives, which the recipe leaves alone.
    """
    model = data.get("model", {})
    in_file = isinstance(model, dict) and "init" in model
    if init is None and not in_file:
        return data, []
    out = dict(data)
    if init is not None:
        out["model"] = {**(model if isinstance(model, dict) else {}), "init": str(init)}
    train = out.get("train", {})
    if not isinstance(train, dict):
        return out, []
    keep = (set(train) if in_file else set()) | {k.removeprefix("train.") for k in overridden}
    out["train"], notes = finetune_train_table(train, keep)
    return out, notes
