"""What ``streamd train --data`` chooses for a data set: its options (``OwnOptions``) and every derived
setting (``derive_choices``: window, feature statistics, augmentation, background share, schedule), with
the measurements behind them; the rules themselves are ``training.derive``'s."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audio_core.compute import resolve_device
from audio_core.toml_config import dotted_keys
from models.common import FeatureConfig, ModelInfo
from models.registry import build_model
from training import derive
from training.cache import clip_fbank
from training.clip_windows import window_count
from training.experiment_spec import ExperimentConfigError, apply_overrides
from training.own_data import SPLIT_FOLDS, OwnData
from training.own_init import ARCH_RECIPES
from training.train_config import PRECISIONS


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


def _fbanks(data: OwnData, fold: int, features: FeatureConfig, cache_dir: Path | None) -> list[np.ndarray]:
    return [clip_fbank(Path(c.path), features, cache_dir) for c in data.clip_set.clips if c.fold == fold]


def _cached_count(cache_dir: Path | None) -> int:
    return len(list(cache_dir.glob("*.npy"))) if cache_dir is not None and cache_dir.is_dir() else 0


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
    say(
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
    n_train = sum(window_count(f.shape[0], frames) for f in train_fbanks)  # a long clip trains several
    background = 0.0 if not opts.background else round(max(0.1, 1.0 / len(data.clip_set.labels)), 3)
    choices: dict[str, Any] = {
        "recipe": recipe,
        "arch": arch,
        "model_config": model_config,
        "window_s": round(window_s, 3),
        "window_from": "--window" if opts.window_s else derive.window_reason(data.durations.values()),
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
    set_epochs = epochs_set(opts)
    if opts.epochs or set_epochs:
        epochs, how = (opts.epochs, "--epochs") if opts.epochs else (set_epochs, "--set train.epochs")
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
        # as it will train: a --set batch size, precision or thread count is timed, not the derived one
        batch = _positive_int(set_value(opts, "train.batch_size")) or train["batch_size"]
        precision = set_value(opts, "train.precision")
        precision = precision if precision in PRECISIONS else train["precision"]
        threads = _positive_int(set_value(opts, "train.num_threads")) or 0
        step = derive.time_step_s(
            model,
            batch,
            frames,
            features.num_mel_bins,
            device=device,
            precision=precision,
            num_threads=threads,
        )
        spent = time.time() - t0
        examples = round(n_train * (1 + background))
        epochs = derive.derive_epochs(step, examples, batch, minutes * 60 - spent)
        fit = derive.epochs_that_fit(step, examples, batch, minutes * 60 - spent)
        on = _threads_note(threads) if device.type == "cpu" else ""
        bound = derive.clamp_note(fit, epochs)
        how = f"{minutes:g}-minute budget{on} at {step:.2f} s per step of {batch}{bound}"
        choices["step_seconds"] = round(step, 4)
        choices["step_timed"] = True
    resumed_train = saved.get("train", {}) if saved and opts.resume else {}
    # a resumed run keeps its warm-up (part of what its saved state depends on) whatever its new length
    train["warmup_epochs"] = resumed_train.get("warmup_epochs", derive.warmup_epochs(epochs))
    if "warmup_epochs" in resumed_train:
        choices["warmup_from"] = "the saved run's"
    for key in train:  # what the run will use, as said and recorded: a --set value over the derived one
        if (value := set_value(opts, f"train.{key}")) is not None:
            train[key] = value
    choices.update({"epochs": epochs, "epochs_from": how, "train": train})
    return choices


def epochs_set(opts: OwnOptions) -> int | None:
    """The epochs a ``--set train.epochs=N`` asks for (a positive whole number), else None (a bad value
    is refused with the rest of the config); giving ``--epochs`` too is refused."""
    value = set_value(opts, "train.epochs")
    if value is not None and opts.epochs:
        raise ExperimentConfigError("--epochs and --set train.epochs both given: give one of them")
    return _positive_int(value)


def _threads_note(threads: int) -> str:
    """The CPU threads the step was timed on (``train.num_threads``, else torch's default), for the line."""
    import torch

    count = threads or torch.get_num_threads()
    return f" on {count} CPU thread{'s' if count != 1 else ''}"


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


# --set keys that a --data run takes from its own options, not from the config it derives: refused in one
# line (with what to give instead), never printed as applied and then ignored, nor written by --print-config
NOT_SET_WITH_DATA = {
    "data": "with --data the clips and the held-out split are DIR's (to choose others, edit the TOML "
    "that --print-config writes)",
    "experiment.mode": "--data trains one model and reports held-out clips",
    "experiment.output_dir": "with --data the output folder is --out",
    "normalization.target_frames": "with --data the window is --window S (seconds)",
    "model.init": "with --data fine-tune with --init CHECKPOINT|NAME",
}


def refuse_unused_sets(opts: OwnOptions) -> None:
    """``ExperimentConfigError`` naming the first ``--set`` key of ``NOT_SET_WITH_DATA`` given (as a key
    of its own, below it, or inside an inline table)."""
    given = set_table(opts)
    for key, why in NOT_SET_WITH_DATA.items():
        value = _at(given, key)
        if value is not None:
            named = f"{key}.{next(iter(value))}" if isinstance(value, dict) and value else key
            raise ExperimentConfigError(f"--set {named}: {why}")


def set_table(opts: OwnOptions) -> dict[str, Any]:
    """The ``--set`` overrides as one table (``apply_overrides`` on an empty one, in order): the one
    reading of them, whether a key is given dotted (``experiment.cache_dir="x"``) or inside an inline
    table (``experiment={cache_dir="x"}``)."""
    return apply_overrides({}, opts.overrides) if opts.overrides else {}


def _at(table: Any, key: str) -> Any:
    for part in key.split("."):
        table = table.get(part) if isinstance(table, dict) else None
    return table


def set_value(opts: OwnOptions, key: str) -> Any:
    """The value the ``--set`` overrides give ``key`` (TOML; ``set_table``), or None."""
    return _at(set_table(opts), key)


def set_keys(opts: OwnOptions) -> set[str]:
    """Every dotted key the ``--set`` overrides give a value (``train.epochs``, also from
    ``train={epochs=3}``)."""
    return dotted_keys(set_table(opts))


def with_sets(doc: dict[str, Any], opts: OwnOptions) -> dict[str, Any]:
    """The derived config ``doc`` with the ``--set`` values over it, key by key: an inline table sets its
    keys and keeps the derived others (``experiment={cache_dir="x"}`` keeps the output folder, ``--out``)."""

    def merged(base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in given.items():
            both = isinstance(value, dict) and isinstance(base.get(key), dict)
            out[key] = merged(base[key], value) if both else value
        return out

    return merged(doc, set_table(opts))


def say(opts: OwnOptions, text: str) -> None:
    """What was found and chosen: on stdout, or on stderr with ``--print-config``, whose stdout is the TOML
    alone (``> mine.toml``)."""
    print(text, file=sys.stderr if opts.print_config else sys.stdout, flush=True)
