"""Settings a training run was given that do nothing for its model or its data, said before it trains.

A value set to something other than its default that no code path reads for this run (``train.layer_decay``
on a model with no stack of blocks, ``[train.distill]`` options without teachers, ``[train.sequences]``
options while training on clips, a distillation token's target for a model without one, prefix targets
without streams) would otherwise be accepted unsaid, and the user would believe it was part of the recipe.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from torch import nn

from training.augment import AugmentConfig
from training.distill import DistillConfig
from training.param_groups import stack_depth
from training.sequences import SequenceConfig
from training.train_config import TrainConfig


def _changed(table: Any, default: Any, skip: str) -> list[str]:
    """Names of ``table``'s fields (but ``skip``) whose values differ from ``default``'s."""
    return [
        f.name for f in fields(table) if f.name != skip and getattr(table, f.name) != getattr(default, f.name)
    ]


def _keys(prefix: str, names: list[str]) -> str:
    return ", ".join(f"{prefix}.{name}" for name in names)


def inert_settings(cfg: TrainConfig, model: nn.Module) -> list[str]:
    """One line per setting of ``cfg`` that has no effect on training ``model``."""
    notes: list[str] = []
    if cfg.layer_decay != 1.0 and stack_depth(model) == 0:
        notes.append(
            f"train.layer_decay = {cfg.layer_decay:g} does nothing for {type(model).__name__}: it scales the "
            "learning rates of a stack of blocks (AST, AuM, Mamba), which this model does not have"
        )
    distill, sequences = cfg.distill, cfg.sequences
    if not distill.enabled:
        if changed := _changed(distill, DistillConfig(), skip="teachers"):
            notes.append(f"{_keys('train.distill', changed)}: no effect without train.distill.teachers")
    else:
        if distill.dist_target != DistillConfig().dist_target and getattr(model, "dist_token", None) is None:
            notes.append(
                f"train.distill.dist_target = {distill.dist_target!r} does nothing for "
                f"{type(model).__name__}: it has no distillation token"
            )
        if distill.stream_targets != DistillConfig().stream_targets and not sequences.enabled:
            notes.append(
                f"train.distill.stream_targets = {distill.stream_targets!r} is for training on streams "
                "(train.sequences.length_s > 0); this run trains on clips"
            )
    if not sequences.enabled and (changed := _changed(sequences, SequenceConfig(), skip="length_s")):
        notes.append(
            f"{_keys('train.sequences', changed)}: no effect while train.sequences.length_s is 0 "
            "(training on clips, not streams)"
        )
    return notes + _inert_mixing(cfg)


def _inert_mixing(cfg: TrainConfig) -> list[str]:
    """``[train.augment]``'s mixing keys that nothing reads: ``mixup_prob`` on streams (their share is
    ``train.sequences.mix_prob``; 0 there says the same as streams do), ``mixing`` and ``mixup_alpha`` when
    nothing is mixed, ``mixup_alpha`` with between-class mixing (its ratio is uniform)."""
    aug, default, streams = cfg.augment, AugmentConfig(), cfg.sequences.enabled
    notes = []
    if streams and aug.mixup_prob not in (0.0, default.mixup_prob):
        notes.append("train.augment.mixup_prob is for clip batches; streams mix train.sequences.mix_prob")
    share = cfg.sequences.mix_prob if streams else aug.mixup_prob
    idle = (
        [k for k in ("mixing", "mixup_alpha") if getattr(aug, k) != getattr(default, k)] if share == 0 else []
    )
    if idle:
        why = "train.sequences.mix_prob" if streams else "train.augment.mixup_prob"
        notes.append(f"{_keys('train.augment', idle)}: no effect while {why} is 0 (nothing is mixed)")
    elif share > 0 and aug.mixing == "bc" and aug.mixup_alpha != default.mixup_alpha:
        notes.append('train.augment.mixup_alpha: no effect with mixing = "bc" (its ratio is uniform)')
    return notes
