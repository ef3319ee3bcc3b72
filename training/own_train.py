"""``streamd train --data DIR``: train on a user's own data with nothing to configure.

It finds the layout (``training.own_data``), prints a start summary, derives the window, the features'
statistics, the augmentation and the schedule (``training.derive``), builds the equivalent experiment
config (``--print-config`` writes it as TOML and stops), trains through the experiment machinery on the
training split with background examples, and prints the held-out report. Everything it chose is printed
and stored in the checkpoint (``extra.derived``); the model is named after the data set.

With ``--init CHECKPOINT|NAME`` it fine-tunes: the architecture, its config, the feature settings and the
normalisation statistics come from the init checkpoint (its weights were trained on them), the window
still comes from the data, and the fine-tuning recipe (``training.finetune_recipe``) adjusts the derived
schedule exactly as it does for a TOML experiment started with ``--init``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audio_core.compute import resolve_device
from models.checkpoint import load_checkpoint, save_checkpoint
from models.common import FeatureConfig, ModelInfo
from models.registry import build_model
from training import derive
from training.cache import clip_fbank
from training.experiment import run_one
from training.experiment_spec import Experiment, apply_overrides, parse_experiment, parse_features
from training.own_data import SPLIT_FOLDS, OwnData, read_own_data
from training.own_init import ARCH_RECIPES, fine_tuning_doc, init_info
from training.own_report import describe, held_out_report

CHOICES_FILE = "choices.json"


@dataclass
class OwnOptions:
    data: Path
    out: Path | None = None
    recipe: str | None = None  # None: "cnn", or the init checkpoint's architecture
    window_s: float | None = None
    minutes: float | None = None
    epochs: int | None = None
    background: bool = True
    print_config: bool = False
    resume: bool = True
    accept_data_change: bool = False  # resume even though the training data's digest differs
    progress: bool = True
    cache_dir: Path | None = Path(".cache/fbank")
    default_minutes: float = 15.0
    init: str | None = None  # fine-tune from this checkpoint (a path or a shipped model's name)
    overrides: list[str] = field(default_factory=list)  # --set KEY=VALUE, applied to the derived config
    compute: str = "auto"  # --compute: where the run trains (and its step is timed)


def start_summary(data: OwnData) -> str:
    """Layout, classes and clips per class and split, and any problems met."""
    counts = data.counts()
    splits = [s for s in ("train", "val", "test", "holdout") if s in counts]
    width = max(len(label) for label in data.clip_set.labels)
    held = sum(counts[data.held_out].values())
    how = ", carved from the training clips" if data.held_out == "holdout" else ""
    lines = [
        f"data set {data.clip_set.name!r}: {data.layout}, {len(data.clip_set.labels)} classes, "
        f"{len(data.clip_set.clips)} clips; held out: {data.held_out} ({held} clips{how})",
        f"  {'class':<{width}}  " + "  ".join(f"{s:>7}" for s in splits),
    ]
    for label in data.clip_set.labels:
        lines.append(f"  {label:<{width}}  " + "  ".join(f"{counts[s][label]:>7}" for s in splits))
    lines += [f"warning: {p}" for p in data.problems]
    return "\n".join(lines)


def _fbanks(data: OwnData, fold: int, features: FeatureConfig, cache_dir: Path | None) -> list[np.ndarray]:
    return [clip_fbank(Path(c.path), features, cache_dir) for c in data.clip_set.clips if c.fold == fold]


def _cached_count(cache_dir: Path | None) -> int:
    return len(list(cache_dir.glob("*.npy"))) if cache_dir is not None and cache_dir.is_dir() else 0


def experiment_doc(
    opts: OwnOptions, data: OwnData, out: Path, features: FeatureConfig, choices: dict[str, Any]
) -> dict[str, Any]:
    """The experiment config equivalent to this run from scratch (``training.experiment_spec`` tables)."""
    held = data.held_out_fold
    return {
        "experiment": {
            "name": data.clip_set.name,
            "output_dir": str(out),
            "cache_dir": str(opts.cache_dir) if opts.cache_dir else "",
            "mode": "single",
        },
        "data": {
            "reader": "own",
            "root": str(opts.data),
            "folds": [SPLIT_FOLDS["train"], held],
            "val_folds": [held],
        },
        "features": {"num_mel_bins": features.num_mel_bins},
        "normalization": {
            "mean": choices["mean"],
            "std": choices["std"],
            "target_frames": choices["frames"],
        },
        "model": {"arch": choices["arch"], "config": choices["model_config"]},
        "train": {
            "epochs": choices["epochs"],
            **choices["train"],
            "background": choices["background"],
            "augment": choices["augment"],
            **({"compute": opts.compute} if opts.compute != "auto" else {}),
        },
    }


NOTES = {
    "data.folds": "train (1) and the held-out split (val 2, test 3, carved 4)",
    "data.val_folds": "the held-out split the report is on",
    "normalization.mean": "mean of the training clips' log-mel values",
    "normalization.std": "their standard deviation",
    "normalization.target_frames": "the window: covers 90 % of the clips (max 10 s)",
    "train.epochs": "as many as fit the time budget at the measured step time",
    "train.background": "background examples (no-class target) per training clip",
    "train.augment.time_mask": "a tenth of the window",
    "train.augment.time_shift_frac": "as far as the clips leave room in the window",
}


def derive_choices(
    opts: OwnOptions,
    data: OwnData,
    features: FeatureConfig,
    saved: dict | None,
    init: ModelInfo | None = None,
) -> dict:
    """Every derived setting, with the measurements behind them (``init``: the checkpoint fine-tuned)."""
    cache = opts.cache_dir
    t0 = time.time()
    before = _cached_count(cache)
    train_fbanks = _fbanks(data, SPLIT_FOLDS["train"], features, cache)
    held_fbanks = _fbanks(data, data.held_out_fold, features, cache)
    computed = _cached_count(cache) - before
    total = len(train_fbanks) + len(held_fbanks)
    _say(
        opts,
        f"features: {features.num_mel_bins}-bin log-mel of {total} clips "
        f"({computed} computed, {total - computed} from the cache {cache}) in {time.time() - t0:.0f} s",
    )
    train_durations = [data.durations[Path(c.path)] for c in data.clip_set.clips if c.fold == 1]
    window_s = opts.window_s if opts.window_s else derive.derive_window(data.durations.values())
    frames = features.num_frames(round(window_s * features.sample_rate))
    mean, std = derive.feature_stats(train_fbanks)
    recipe = ARCH_RECIPES[init.arch] if init is not None else opts.recipe or "cnn"
    arch, model_config, train = derive.recipe_model(recipe, frames)
    if init is not None:  # the checkpoint's model, trained on its own statistics
        arch = init.arch
        filled = ("num_classes", "num_mel_bins", "target_frames")  # from this data and its window
        model_config = {k: v for k, v in init.config.items() if k not in filled}
        mean, std = init.normalization.mean, init.normalization.std
    median = float(np.median(train_durations))
    augment = derive.derive_augment(frames, features.num_mel_bins, median, window_s)
    n_train = len(train_fbanks)
    background = 0.0 if not opts.background else round(max(0.1, 1.0 / len(data.clip_set.labels)), 3)
    choices: dict[str, Any] = {
        "recipe": recipe,
        "arch": arch,
        "model_config": model_config,
        "window_s": round(window_s, 3),
        "window_from": "--window" if opts.window_s else "90 % of clip durations",
        "frames": frames,
        "clip_seconds_median": round(median, 3),
        "mean": round(mean, 5),
        "std": round(std, 5),
        "augment": derive.augment_dict(augment),
        "background": background,
        "held_out": data.held_out,
    }
    if opts.init is not None:
        choices["init"] = str(opts.init)
    train = {**train, "warmup_epochs": 0.0, "precision": "auto", "eval_every": 5, "seed": 0}
    if opts.epochs:
        epochs, how = opts.epochs, "--epochs"
    elif saved and opts.resume and opts.minutes in (None, saved.get("minutes")):
        epochs, how = int(saved["epochs"]), "as in the saved run being resumed"
        choices["step_seconds"] = saved.get("step_seconds")
        if "minutes" in saved:
            choices["minutes"] = saved["minutes"]
    else:
        minutes = opts.minutes or opts.default_minutes
        choices["minutes"] = minutes
        cfg = {
            **model_config,
            "num_classes": len(data.clip_set.labels),
            "num_mel_bins": features.num_mel_bins,
        }
        if arch == "ast":
            cfg["target_frames"] = frames
        device = resolve_device(opts.compute, "--compute")  # timed where it will train
        model = build_model(arch, cfg).to(device)
        step = derive.time_step_s(
            model,
            train["batch_size"],
            frames,
            features.num_mel_bins,
            device=device,
            precision=train["precision"],
        )
        spent = time.time() - t0
        examples = round(n_train * (1 + background))
        epochs = derive.derive_epochs(step, examples, train["batch_size"], minutes * 60 - spent)
        how = f"{minutes:g}-minute budget at {step:.2f} s per step of {train['batch_size']}"
        choices["step_seconds"] = round(step, 4)
    resumed_train = saved.get("train", {}) if saved and opts.resume else {}
    # a resumed run keeps its warm-up (part of what its saved state depends on) whatever its new length
    train["warmup_epochs"] = resumed_train.get("warmup_epochs", derive.warmup_epochs(epochs))
    choices.update({"epochs": epochs, "epochs_from": how, "train": train})
    return choices


def _say(opts: OwnOptions, text: str) -> None:
    """What was found and chosen: on stdout, or on stderr with ``--print-config``, whose stdout is the TOML
    alone (``> mine.toml``)."""
    print(text, file=sys.stderr if opts.print_config else sys.stdout, flush=True)


def run_own_data(opts: OwnOptions) -> dict[str, Any]:
    """The whole command; returns the held-out report (or {} with ``print_config``)."""
    if not opts.print_config:  # a missing GPU is said before any file is read
        resolve_device(opts.compute, "--compute")
    data = read_own_data(opts.data)
    out = opts.out or Path("runs") / data.clip_set.name
    _say(opts, start_summary(data))
    init = init_info(opts.init, opts.recipe)
    features = init.features if init is not None else FeatureConfig(num_mel_bins=derive.NUM_MEL_BINS)
    features = _with_feature_overrides(features, opts)
    saved_path = out / CHOICES_FILE
    saved = json.loads(saved_path.read_text()) if saved_path.is_file() and opts.resume else None
    if saved is not None and not (out / "train_state.safetensors").exists():
        saved = None
    choices = derive_choices(opts, data, features, saved, init)
    doc = experiment_doc(opts, data, out, features, choices)
    if opts.init is not None:
        keep = {item.partition("=")[0].strip() for item in opts.overrides}
        doc = fine_tuning_doc(doc, opts.init, keep | ({"train.epochs"} if opts.epochs else set()), choices)
    if opts.overrides:  # --set wins over what was derived, as it does over a TOML
        doc = apply_overrides(doc, opts.overrides)
    _say(opts, describe(choices, features))
    if choices.get("init_notes"):
        _say(opts, f"fine-tuning recipe: {', '.join(choices['init_notes'])} (as for any --init)")
    if opts.overrides:
        _say(opts, f"--set: {', '.join(opts.overrides)} (over the derived settings)")
    exp: Experiment = parse_experiment(doc, f"--data {opts.data}")  # checked before printed or run
    if opts.print_config:
        header = (
            f"streamd train --data {opts.data}: the equivalent experiment config.\n"
            f"Run it with:  streamd train THIS.toml"
        )
        held = sum(data.counts()[data.held_out].values())
        notes = {**NOTES, "data.val_folds": f"{NOTES['data.val_folds']} ({held} clips)"}
        if opts.window_s:
            notes["normalization.target_frames"] = f"the window: --window {opts.window_s:g}"
        print(derive.toml_text(doc, notes, header), end="")
        return {}
    resolve_device(exp.train.compute, "train.compute")  # one --set asked for: said before training
    clip_set = data.clip_set.subset(folds=[SPLIT_FOLDS["train"], data.held_out_fold])
    out.mkdir(parents=True, exist_ok=True)
    resuming = opts.resume and (out / "train_state.safetensors").exists()
    if not resuming:  # a resumed run's choices are written once it was accepted: a refusal changes nothing
        saved_path.write_text(json.dumps(choices, indent=1))
    entry = run_one(
        exp, clip_set, "", [data.held_out_fold], opts.resume, opts.progress, opts.accept_data_change
    )
    if resuming:
        saved_path.write_text(json.dumps(choices, indent=1))
    _store_choices(Path(entry["checkpoint"]), data, choices)
    report = entry["report"]
    print(held_out_report(report, data, entry, out, choices))
    return report


def _with_feature_overrides(features: FeatureConfig, opts: OwnOptions) -> FeatureConfig:
    """``features`` with the ``--set features.KEY=VALUE`` overrides, checked as the config will be, before
    any feature is computed: the window and the statistics are derived on the features trained on."""
    mine = [item for item in opts.overrides if item.strip().startswith("features.")]
    if not mine:
        return features
    table = apply_overrides({"features": features.to_dict()}, mine)["features"]
    return parse_features(table, f"--data {opts.data}")


def _store_choices(path: Path, data: OwnData, choices: dict[str, Any]) -> None:
    """Name the model after the data set and keep every choice in the checkpoint."""
    model, info = load_checkpoint(path)
    info.extra = {**info.extra, "name": data.clip_set.name, "derived": choices}
    save_checkpoint(path, model, info)
