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
import os
import sys
from pathlib import Path
from typing import Any

from audio_core.compute import resolve_device
from audio_core.windows import window_samples
from models.checkpoint import load_checkpoint, save_checkpoint
from models.common import FeatureConfig, ModelInfo
from training import derive
from training.experiment import run_one
from training.experiment_spec import (
    Experiment,
    ExperimentConfigError,
    parse_experiment,
    parse_features,
)
from training.output_claim import claim_output
from training.own_choices import (
    OwnOptions,
    derive_choices,
    epochs_set,
    refuse_unused_sets,
    say,
    set_keys,
    set_table,
    with_sets,
)
from training.own_data import SPLIT_FOLDS, OwnData, read_own_data
from training.own_init import fine_tuning_doc, init_info
from training.own_output import DATA_SET_KEY, data_set_entry, other_data_set, other_data_set_line
from training.own_report import describe, held_out_report
from training.readers import DatasetError
from training.trained_clips import KEY, SET_ASIDE_KEY, record

CHOICES_FILE = "choices.json"


def start_summary(data: OwnData) -> str:
    """Layout, classes and clips per class and split (the problems met are ``warn_problems``')."""
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
    return "\n".join(lines)


def warn_problems(data: OwnData) -> None:
    """What was left out or is odd in the data, as every command warns: on stderr, ``streamd: warning:``."""
    for problem in data.problems:
        print(f"streamd: warning: {problem}", file=sys.stderr, flush=True)


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


def _absolute_paths(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with its data, output and cache paths absolute: a printed config runs from any folder."""
    exp, data = dict(doc["experiment"]), dict(doc["data"])
    for table, key in ((exp, "output_dir"), (exp, "cache_dir"), (data, "root")):
        if table.get(key):
            table[key] = os.path.abspath(table[key])
    return {**doc, "experiment": exp, "data": data}


def run_own_data(opts: OwnOptions) -> dict[str, Any]:
    """The whole command; returns the held-out report (or {} with ``print_config``)."""
    resolve_device(opts.compute, "--compute")  # a missing GPU is said before any file is read
    epochs_set(opts)  # --epochs against --set train.epochs: said before any file is read
    refuse_unused_sets(opts)  # --set data.*, experiment.mode, ...: the run's own options decide them
    if opts.out is not None:
        _refuse_output_inside_data(opts.out, Path(opts.data), given=True)
    init = init_info(opts.init, opts.recipe)  # its weights checked before any clip is read
    features = init.features if init is not None else FeatureConfig(num_mel_bins=derive.NUM_MEL_BINS)
    features = _with_feature_overrides(features, opts)  # refused before the output folder is made
    if opts.window_s:
        _check_window(opts.window_s, features)
    data = read_own_data(opts.data)
    out = opts.out or Path("runs") / data.clip_set.name
    _refuse_output_inside_data(out, Path(opts.data), given=opts.out is not None)
    if opts.resume and (other := other_data_set(out, Path(opts.data), data, CHOICES_FILE)):
        raise DatasetError(other_data_set_line(out, other, Path(opts.data)))  # not: start over (--fresh)
    say(opts, start_summary(data))
    warn_problems(data)
    return _derive_and_train(opts, data, out, features, init)


def _check_window(window_s: float, features: FeatureConfig) -> None:
    """``--window`` by the window rule of every command (``audio_core.windows.window_samples``): a whole
    number of frame shifts (10 ms), as ``--hop`` is, so that the window reported and stored is the one
    every command uses."""
    try:
        window_samples(window_s, features)
    except ValueError as exc:
        raise ExperimentConfigError(f"--window{str(exc).removeprefix('window_s')}") from None


def _derive_and_train(
    opts: OwnOptions, data: OwnData, out: Path, features: FeatureConfig, init: ModelInfo | None
) -> dict[str, Any]:
    saved_path = out / CHOICES_FILE
    saved = json.loads(saved_path.read_text()) if saved_path.is_file() and opts.resume else None
    if saved is not None and not (out / "train_state.safetensors").exists():
        saved = None
    choices = derive_choices(opts, data, features, saved, init)
    doc = experiment_doc(opts, data, out, features, choices)
    if opts.init is not None:
        keep = set_keys(opts) | ({"train.epochs"} if opts.epochs else set())
        doc = fine_tuning_doc(doc, opts.init, keep, choices)
    if opts.overrides:  # --set wins over what was derived, key by key
        doc = with_sets(doc, opts)
    say(opts, describe(choices, features))
    if choices.get("init_notes"):
        say(opts, f"fine-tuning recipe: {', '.join(choices['init_notes'])} (as for any --init)")
    if opts.overrides:
        say(opts, f"--set: {', '.join(opts.overrides)} (over the derived settings)")
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
        if "step_timed" not in choices:  # --epochs, --set train.epochs or the saved run
            notes["train.epochs"] = str(choices["epochs_from"])
        print(derive.toml_text(_absolute_paths(doc), notes, header), end="")
        return {}
    resolve_device(exp.train.compute, "train.compute")  # one --set asked for: said before training
    clip_set = data.clip_set.subset(folds=[SPLIT_FOLDS["train"], data.held_out_fold])
    with claim_output(out):  # one command at a time, from here (everything checked) to the last file
        return _train(opts, data, out, exp, clip_set, choices)


def _train(
    opts: OwnOptions, data: OwnData, out: Path, exp: Experiment, clip_set: Any, choices: dict[str, Any]
) -> dict[str, Any]:
    saved_path = out / CHOICES_FILE
    resuming = opts.resume and (out / "train_state.safetensors").exists()
    # with the data set trained on (training.own_output): another data set's run is told to use --out
    saved = json.dumps({**choices, DATA_SET_KEY: data_set_entry(Path(opts.data), data)}, indent=1)
    if not resuming:  # a resumed run's choices are written once it was accepted: a refusal changes nothing
        saved_path.write_text(saved)
    entry = run_one(
        exp, clip_set, "", [data.held_out_fold], opts.resume, opts.progress, opts.accept_data_change
    )
    if resuming:
        saved_path.write_text(saved)
    _store_choices(Path(entry["checkpoint"]), data, choices)
    report = entry["report"]
    print(held_out_report(report, data, entry, out, choices))
    return report


def _refuse_output_inside_data(out: Path, data: Path, given: bool) -> None:
    """Training output inside a data folder would be read as data by the next run (its files left out
    and warned about, or worse): refused in one line."""
    if not data.is_dir():
        return
    root, target = data.resolve(), out.resolve()
    if target == root or root in target.parents:
        how = "--out" if given else "the default output (runs/<data set> under the working folder)"
        raise DatasetError(
            f"{how} {out} is inside the data folder {data}: the next run would read it as data; "
            "give an --out outside the data folder"
        )


def _with_feature_overrides(features: FeatureConfig, opts: OwnOptions) -> FeatureConfig:
    """``features`` with the ``--set features.KEY=VALUE`` overrides, checked as the config will be, before
    any feature is computed: the window and the statistics are derived on the features trained on."""
    given = set_table(opts).get("features")  # features.KEY=... or features={...}, as with_sets reads it
    if given is None:
        return features
    table = {**features.to_dict(), **given} if isinstance(given, dict) else given
    return parse_features(table, f"--data {opts.data}")


def _store_choices(path: Path, data: OwnData, choices: dict[str, Any]) -> None:
    """Name the model after the data set and keep every choice in the checkpoint, with the digests of the
    clips it trained on and of those it set aside (``training.trained_clips``: evaluate tells held-out
    clips from them)."""
    model, info = load_checkpoint(path)
    info.extra = {
        **info.extra,
        "name": data.clip_set.name,
        "derived": choices,
        KEY: record(data.training_clips()),
    }
    if aside := data.set_aside():  # not in its report: evaluate --held-out leaves them out too
        info.extra[SET_ASIDE_KEY] = record(aside)
    save_checkpoint(path, model, info)
