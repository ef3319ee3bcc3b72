"""``streamd train --data DIR --init CHECKPOINT|NAME``: what fine-tuning changes in a zero-config run.

The architecture, its config, the feature settings and the normalisation statistics come from the init
checkpoint (its weights were trained on them); the window still comes from the data; the fine-tuning
recipe (``training.finetune_recipe``) adjusts the derived schedule as it does for any ``--init``.
"""

from __future__ import annotations

from typing import Any

from models.common import ModelInfo
from training.derive import RECIPES, recipe_model
from training.finetune_recipe import with_init
from training.init_from import checked_info, resolve_init

# each zero-config recipe's architecture, as training.derive.recipe_model builds it (one owner of the names)
ARCH_RECIPES = {recipe_model(recipe, 100)[0]: recipe for recipe in RECIPES}


def init_info(init: str | None, recipe: str | None) -> ModelInfo | None:
    """The init checkpoint's metadata, checked against ``--recipe``, its weights loaded as every command
    loads them (none NaN or infinite: refused before any feature is computed); None without ``--init``."""
    if init is None:
        return None
    try:
        path = resolve_init(init)
    except ValueError as exc:
        raise ValueError(f"--init {exc}") from None
    info = checked_info(path)  # the full check, once per file (init_settings and the run ask again)
    own = ARCH_RECIPES.get(info.arch)
    if own is None:
        known = ", ".join(ARCH_RECIPES)
        raise ValueError(f"--init {init}: a {info.arch} checkpoint; --data fine-tunes {known}")
    if recipe is not None and recipe != own:
        raise ValueError(f"--recipe {recipe} contradicts --init {init}, a {own} model ({info.arch})")
    return info


def fine_tuning_doc(
    doc: dict[str, Any], init: str, keep: set[str], choices: dict[str, Any]
) -> dict[str, Any]:
    """The zero-config experiment ``doc`` turned into a fine-tuning one, the recipe leaving the keys in
    ``keep`` (``train.epochs``, ...: what the user set) alone; ``choices`` gets what changed."""
    doc = {**doc, "model": {}, "features": {}, "normalization": {"target_frames": choices["frames"]}}
    doc, notes = with_init(doc, init, keep)
    choices["init_notes"] = notes
    choices["epochs"] = doc["train"]["epochs"]
    for key in ("lr", "warmup_epochs", "backbone_lr_scale"):
        if key in doc["train"]:
            choices["train"][key] = doc["train"][key]
    return doc
