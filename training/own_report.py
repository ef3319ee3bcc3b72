"""What ``streamd train --data DIR`` prints: the derived settings and the held-out report."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from models.common import FeatureConfig
from training.own_data import SPLIT_NAMES, OwnData


def describe(choices: dict[str, Any], features: FeatureConfig) -> str:
    aug = choices["augment"]
    return "\n".join(
        [
            f"window: {choices['window_s']:g} s = {choices['frames']} frames ({choices['window_from']}; "
            f"median clip {choices['clip_seconds_median']:g} s)",
            f"normalisation: mean {choices['mean']:.4f}, std {choices['std']:.4f} "
            + (
                f"(the init checkpoint's, {features.num_mel_bins}-bin log-mel)"
                if "init" in choices
                else f"(the training clips' {features.num_mel_bins}-bin log-mel)"
            ),
            f"augmentation: shift up to {aug['time_shift_frac']:g} of the window, 2 time masks < "
            f"{aug['time_mask']} frames, 2 frequency masks < {aug['freq_mask']} bins, mixup "
            f"{aug['mixup_prob']:g}, gain ±{aug['gain_db']:g} dB",
            f"background: {choices['background']:g} examples per clip, target no class"
            if choices["background"]
            else "background: off (--no-background)",
            f"model: {choices['recipe']} recipe ({choices['arch']} {json.dumps(choices['model_config'])})"
            + (f", fine-tuned from {choices['init']}" if "init" in choices else ""),
            f"schedule: {choices['epochs']} epochs ({choices['epochs_from']}), warm-up "
            f"{choices['train']['warmup_epochs']:g}"
            + (f" ({choices['warmup_from']})" if "warmup_from" in choices else "")
            + f", batch {choices['train']['batch_size']}, "
            f"lr {choices['train']['lr']:g}",
        ]
    )


def held_out_report(
    report: dict[str, Any], data: OwnData, entry: dict[str, Any], out: Path, choices: dict[str, Any]
) -> str:
    fold = data.held_out_fold
    n = sum(1 for c in data.clip_set.clips if c.fold == fold)
    lines = [
        f"held-out report on {SPLIT_NAMES[fold]} ({n} clips): accuracy {report['accuracy']:.4f}, "
        f"macro-F1 {report['macro_f1']:.4f} (training {entry['train_seconds']:.0f} s)",
    ]
    if entry.get("not_held_out"):  # its --init checkpoint trained on some of those clips
        lines.append(f"  warning: {entry['not_held_out']}")
    lines.append("  accuracy per class (its held-out clips classified right):")
    for label, acc in report["per_class_accuracy"].items():
        lines.append(f"  {label}: {'n/a' if acc is None else f'{acc:.3f}'}")
    live = f"streamd run --checkpoint {shlex.quote(str(entry['checkpoint']))}"  # its own window
    if choices["recipe"] != "recurrent":  # a recurrent model gives one result per column: no hop
        live += f" --hop {max(0.1, round(choices['window_s'] / 4, 1)):g}"
    lines += [
        f"model: {entry['checkpoint']} (named {data.clip_set.name!r}); report in {out / 'eval'}",
        f"run it live: {live}",
    ]
    return "\n".join(lines)
