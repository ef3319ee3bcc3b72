"""Running an experiment: one training run, or k-fold cross-validation over the data's folds, in one call.

The spec (its tables and checks) is ``training.experiment_spec``, the summaries
``training.experiment_summary``. Each run writes ``<output_dir>/<run>/model.safetensors`` (run =
``fold<k>`` in cv, else ``single`` / ``full``), its held-out evaluation (report.json, report.md,
confusion.png) and ``summary.json`` + ``summary.md``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audio_core.compute import resolve_device
from models.checkpoint import file_digest, load_checkpoint, read_info
from models.common import ModelInfo
from models.registry import build_model
from training import metrics
from training.cache import cached_fbanks
from training.clip_windows import TrainingWindows, training_windows
from training.clips import ClipSet
from training.distill import build_teacher, vet_teachers
from training.evaluate import clip_scores, evaluate_clip_set
from training.experiment_spec import Experiment, ExperimentConfigError
from training.experiment_summary import keep_other_modes_results, recorded_config, summarize, summary_markdown
from training.init_from import load_init_weights
from training.loop import train_model
from training.model_input import filled_config
from training.output_claim import claim_output
from training.readers import read_dataset
from training.trained_clips import (
    INIT_KEY,
    KEY,
    inherited,
    not_held_out_lines,
    numbered_as_data,
    record,
    recorded,
)
from training.usable_clips import read_folders, usable_subset


def load_clip_set(exp: Experiment) -> ClipSet:
    """The experiment's dataset, limited to ``folds``; class folders' unusable files (unreadable, or no
    signal) left out with a warning, as ``train --data`` and ``evaluate --folders/--config`` leave them
    out."""
    notes: list[str] = []
    if exp.reader == "folders":
        clip_set, notes = read_folders(exp.reader_options)
    else:
        clip_set = read_dataset(exp.reader, **exp.reader_options)
    if exp.folds is not None:  # a fold named that holds no clip is said, not dropped (evaluate's rule)
        if missing := sorted(set(exp.folds) - set(clip_set.folds())):
            found = f"the dataset has folds {clip_set.folds()}"
            raise ExperimentConfigError(f"{exp.source}: data.folds: folds {missing} have no clips ({found})")
        clip_set = clip_set.subset(folds=exp.folds)
    if not clip_set.clips:
        raise ExperimentConfigError(f"{exp.source}: data: no clips in folds {exp.folds}")
    if exp.reader == "folders":
        listed = set(clip_set.folds())
        clip_set, warnings, _ = usable_subset(clip_set)
        for line in notes + warnings:
            print(f"streamd: warning: {line}", file=sys.stderr, flush=True)
        if emptied := sorted(listed - set(clip_set.folds())):  # a fold of unusable files: said, not dropped
            raise ExperimentConfigError(f"{exp.source}: data.folds: folds {emptied} have no usable clips")
    if problem := clip_set.one_class_problem():
        raise ExperimentConfigError(f"{exp.source}: data: {problem}")
    return clip_set


def run_plan(exp: Experiment, clip_set: ClipSet) -> list[tuple[str, list[int] | None]]:
    """(run name, held-out folds or None) for every run the experiment makes."""
    available = clip_set.folds()
    if exp.mode == "full":
        return [("full", None)]
    if exp.mode == "single":
        missing = sorted(set(exp.val_folds) - set(available))
        if missing:
            among = f" among data.folds {exp.folds}" if exp.folds is not None else ""
            raise ExperimentConfigError(f"{exp.source}: data.val_folds: folds {missing} have no clips{among}")
        return [("single", exp.val_folds)]
    if len(available) < 2:
        raise ExperimentConfigError(
            f"{exp.source}: cross-validation needs at least 2 folds, found {available}"
        )
    return [(f"fold{k}", [k]) for k in available]


def model_info(exp: Experiment, clip_set: ClipSet, model_config: dict[str, Any]) -> ModelInfo:
    return ModelInfo(
        arch=exp.arch,
        config=model_config,
        labels=list(clip_set.labels),
        features=exp.features,
        normalization=exp.normalization,
        multi_label=clip_set.multi_label,
        extra={"experiment": exp.name, "dataset": clip_set.name},  # whose folds train/val_folds are
    )


def filled_model_config(exp: Experiment, clip_set: ClipSet) -> dict[str, Any]:
    """The arch's full config: the user's values, plus sizes taken from the data where the config has them."""
    try:
        return filled_config(
            exp.arch, exp.model_config, len(clip_set.labels), exp.features, exp.normalization
        )
    except (TypeError, ValueError) as exc:
        raise ExperimentConfigError(f"{exp.source}: model.config: {exc}") from None


def _arrays(
    exp: Experiment, clip_set: ClipSet, windows: TrainingWindows | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each clip's first window, or the ``windows`` of its clips (``training.clip_windows``)."""
    if windows is None:
        x = cached_fbanks(clip_set.clips, exp.features, exp.cache_dir, exp.normalization.target_frames)
        return x, clip_set.targets()
    clips = [clip_set.clips[i] for i in windows.clip]
    x = cached_fbanks(clips, exp.features, exp.cache_dir, exp.normalization.target_frames, windows.start_s)
    return x, clip_set.targets()[windows.clip]


def run_one(
    exp: Experiment,
    clip_set: ClipSet,
    run_name: str,
    held_out: list[int] | None,
    resume: bool,
    progress: bool,
    accept_data_change: bool = False,
) -> dict[str, Any]:
    """Train one run and evaluate it on its held-out folds; returns its summary entry."""
    out_dir = exp.output_dir / run_name
    train_set = clip_set if held_out is None else clip_set.subset(exclude=held_out)
    val_set = None if held_out is None else clip_set.subset(folds=held_out)
    if not train_set.clips:
        raise ExperimentConfigError(f"{exp.source}: run {run_name} has no training clips")
    model_config = filled_model_config(exp, clip_set)
    info = model_info(exp, clip_set, model_config)
    info.extra.update({"run": run_name, "train_folds": train_set.folds(), "val_folds": held_out or []})
    # which clips it trained on, by their bytes: evaluate tells held-out clips from them whatever its folds
    info.extra[KEY] = record(clip.path for clip in train_set.clips)
    if "note" in info.extra[KEY]:  # too many clips to record each
        print(f"{run_name or exp.name}: {info.extra[KEY]['note']}", flush=True)
    torch.manual_seed(exp.train.seed)  # the initial weights are part of what a seed reproduces
    model = build_model(exp.arch, model_config)
    if exp.init is not None:
        info.extra["init"] = load_init_weights(model, exp.init, list(clip_set.labels))
        # what a resumed run must have started from (its name, to read; its bytes, to tell files apart)
        info.extra["init_source"] = f"{Path(exp.init).name} sha256:{file_digest(exp.init)[:16]}"
        own = recorded(info.extra) or set()  # what it has seen: its init's clips (not stored twice)
        info.extra[INIT_KEY] = inherited(read_info(exp.init).extra, Path(exp.init).name, own)
        print(f"{run_name or exp.name}: {info.extra['init']}", flush=True)
    not_held_out = _init_overlap(exp, clip_set, val_set, held_out, info.extra, run_name, train_set.clips)
    val = _arrays(exp, val_set) if val_set is not None else None
    windows = training_windows(train_set.clips, exp.features, exp.cache_dir, exp.normalization.target_frames)
    if note := windows.note():
        print(f"{run_name or exp.name}: {note}", flush=True)
    teacher = None
    if exp.train.distill.enabled:
        streams = exp.train.sequences.enabled
        column = int(getattr(model, "column_frames", 0))
        clips = [train_set.clips[i] for i in windows.clip]
        held = [Path(c.path) for c in val_set.clips] if val_set is not None else []
        teacher = build_teacher(
            exp.train.distill, clips, held_out, info, exp.cache_dir, streams, column, windows.start_s, held
        )
        info.extra["distill"] = {"teachers": [str(p) for p in teacher.paths], "online": teacher.online}
    train = _arrays(exp, train_set, windows)
    # a run's own folder is locked too (own data's output is the experiment's, locked by its command)
    with claim_output(out_dir) if run_name else contextlib.nullcontext():
        result = train_model(
            model,
            train,
            val,
            exp.train,
            info,
            out_dir,
            resume,
            progress,
            teacher,
            accept_data_change,
            score_val=None if val_set is None else _clip_scorer(info, val_set, exp.cache_dir),
            real_frames=np.asarray(windows.real_frames),
        )
    entry: dict[str, Any] = {
        "run": run_name,
        "checkpoint": str(result.checkpoint),
        "train_clips": len(train_set.clips),
        "train_seconds": result.train_seconds,
        "final_loss": result.history[-1]["loss"] if result.history else None,
    }
    if "init" in info.extra:
        entry["init"] = info.extra["init"]
    if not_held_out:
        entry["not_held_out"] = not_held_out
    if val_set is not None:
        from models.inference import prepare_for_inference
        from models.precision import choose_precision

        # the model as `streamd evaluate` and the daemon serve it on this CPU (their --precision auto)
        trained, trained_info = load_checkpoint(result.checkpoint)
        precision = choose_precision("auto", "cpu", trained_info.extra).precision
        trained = prepare_for_inference(trained.eval(), precision)
        report = evaluate_clip_set(
            trained, trained_info, val_set, out_dir / "eval", exp.cache_dir, run_name, precision=precision
        )
        entry.update({"val_folds": held_out, "val_clips": len(val_set.clips), "report": report})
    return entry


def _clip_scorer(
    info: ModelInfo, val_set: ClipSet, cache_dir: Path | None
) -> Callable[[torch.nn.Module, str], np.ndarray]:
    """The held-out clips scored during training as the report scores them (``clip_scores``), so that the
    epoch line's ``val`` is the report's accuracy of the weights at that epoch."""

    def score(model: torch.nn.Module, precision: str) -> np.ndarray:
        return clip_scores(model, info, val_set, cache_dir, precision=precision)

    return score


def _init_overlap(
    exp: Experiment, clip_set: ClipSet, val_set: ClipSet | None, held_out: list[int] | None,
    extra: dict[str, Any], run_name: str, train_clips: list,
) -> str | None:  # fmt: skip
    """Say (and return) why the run's held-out figures are not held out (``not_held_out_lines``)."""
    if val_set is None:
        return None
    by_fold = clip_set.name if numbered_as_data(exp.reader) else None  # folds as the data numbers them
    trained, paths = [Path(c.path) for c in train_clips], [Path(c.path) for c in val_set.clips]
    lines = not_held_out_lines(extra, trained, paths, by_fold, held_out or [], exp.reader == "esc50")
    for line in lines:
        print(f"streamd: warning: {run_name or exp.name}: {line}", file=sys.stderr, flush=True)
    return "; ".join(lines) or None


def run_experiment(
    exp: Experiment, resume: bool = True, progress: bool = True, accept_data_change: bool = False
) -> dict[str, Any]:
    """Run every training the experiment asks for; write and return the summary."""
    resolve_device(exp.train.compute, "train.compute")  # a missing GPU is said before any feature is made
    clip_set = load_clip_set(exp)
    plan = run_plan(exp, clip_set)
    if exp.train.distill.enabled:  # refuse a dishonest or unusable teacher before any run trains
        held_outs = [held_out for _, held_out in plan]
        vet_teachers(exp.train.distill, held_outs, clip_set.labels, clip_set.name, clip_set.multi_label)
    with claim_output(exp.output_dir):
        return _run_all(exp, clip_set, plan, resume, progress, accept_data_change)


def _run_all(
    exp: Experiment,
    clip_set: ClipSet,
    plan: list[tuple[str, list[int] | None]],
    resume: bool,
    progress: bool,
    accept_data_change: bool,
) -> dict[str, Any]:
    keep_other_modes_results(exp.output_dir, exp.mode)
    with recorded_config(exp.output_dir / "config.json", exp.raw):  # a refused run leaves the old one
        entries = [
            run_one(exp, clip_set, name, held_out, resume, progress, accept_data_change)
            for name, held_out in plan
        ]
    summary = summarize(exp, entries, clip_set.labels)
    (exp.output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    (exp.output_dir / "summary.md").write_text(summary_markdown(summary))
    if "pooled_confusion_matrix" in summary and len(plan) > 1:
        pooled = np.array(summary["pooled_confusion_matrix"])
        metrics.plot_confusion_matrix(
            pooled, clip_set.labels, exp.output_dir / "confusion.png", f"{exp.name} (all folds)"
        )
    return summary
