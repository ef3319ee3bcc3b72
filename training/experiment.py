"""TOML experiments: one training run, or k-fold cross-validation over the data's folds, in one call.

A config has these tables (every key optional unless marked; unknown keys are rejected, naming the file
and the key):

- ``[experiment]`` ``name``, ``output_dir`` (default ``runs/<name>``), ``cache_dir`` (fbank cache,
  default ``.cache/fbank``), ``mode``: ``"single"`` (train on ``folds`` minus ``val_folds``, validate on
  ``val_folds``), ``"cv"`` (each fold of ``folds`` held out in turn) or ``"full"`` (all ``folds``, no
  validation);
- ``[data]`` ``reader`` (required: ``esc50``, ``folders`` or ``json``) and that reader's options
  (``training.readers``), plus ``folds`` (default: all) and ``val_folds``;
- ``[features]`` ``FeatureConfig`` fields; ``[normalization]`` ``Normalization`` fields;
- ``[model]`` ``arch`` (required) and ``[model.config]`` (the arch's config fields; ``num_classes``,
  ``num_mel_bins`` and ``target_frames`` are filled in from the data when the config has them);
- ``[train]`` ``TrainConfig`` fields, ``[train.augment]`` ``AugmentConfig`` fields, ``[train.sequences]``
  ``SequenceConfig`` fields (recurrent models trained on streams of clips) and ``[train.distill]``
  ``DistillConfig`` fields (teachers; ``training.distill``).

Relative paths are resolved against the current directory. Each run writes
``<output_dir>/<run>/model.safetensors`` (run = ``fold<k>`` in cv, else ``single`` / ``full``), its
held-out evaluation (report.json, report.md, confusion.png) and ``summary.json`` + ``summary.md``.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audio_core.toml_config import load_toml
from models.common import FeatureConfig, ModelInfo, Normalization
from models.registry import available_archs, build_model, config_class, config_to_dict, make_config
from training import metrics
from training.augment import AugmentConfig
from training.cache import cached_fbanks
from training.clips import ClipSet
from training.distill import DistillConfig, build_teacher, vet_teachers
from training.evaluate import evaluate_clip_set
from training.finetune_recipe import with_init
from training.init_from import init_settings, load_init_weights, resolve_init
from training.loop import TrainConfig, train_model
from training.readers import read_dataset, reader_options
from training.sequences import SequenceConfig

MODES = ("single", "cv", "full")
FILLED_FROM_DATA = ("num_classes", "num_mel_bins", "target_frames")


class ExperimentConfigError(ValueError):
    """An experiment config is invalid; the message names the file and the key."""


@dataclass
class Experiment:
    """A validated experiment config."""

    source: str
    name: str
    output_dir: Path
    cache_dir: Path | None
    mode: str
    reader: str
    reader_options: dict[str, Any]
    folds: list[int] | None
    val_folds: list[int]
    features: FeatureConfig
    normalization: Normalization
    arch: str
    model_config: dict[str, Any]
    train: TrainConfig
    raw: dict[str, Any] = field(default_factory=dict)
    init: Path | None = None  # fine-tuning: the checkpoint the weights start from (training.init_from)
    init_notes: list[str] = field(default_factory=list)  # what the fine-tuning recipe changed


_EXPERIMENT_KEYS = {"name": str, "output_dir": str, "cache_dir": str, "mode": str}
_DATA_KEYS = {"reader": str, "folds": list, "val_folds": list}
_PATH_OPTIONS = {"csv_path", "audio_dir", "root", "datafiles", "label_csv"}


def _fail(source: str, key: str, problem: str) -> ExperimentConfigError:
    return ExperimentConfigError(f"{source}: {key}: {problem}")


def _table(source: str, data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise _fail(source, key, "must be a table")
    return value


def _check_value(source: str, key: str, value: Any, expected: Any) -> Any:
    """Check ``value`` against the type of a default (or a type); ints are accepted for floats."""
    kind = expected if isinstance(expected, type) else type(expected)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (list, tuple):
        if not isinstance(value, list):
            example = "" if isinstance(expected, type) else f", e.g. {list(expected)!r}"
            raise _fail(source, key, f"must be a list{example}, got {value!r}")
        return value
    if kind is bool and not isinstance(value, bool):
        raise _fail(source, key, f"must be true or false, got {value!r}")
    if kind in (int, float, str) and (not isinstance(value, kind) or isinstance(value, bool)):
        raise _fail(source, key, f"must be {kind.__name__}, got {value!r}")
    return value


def _dataclass_values(source: str, prefix: str, cls: type, values: dict[str, Any], skip=()) -> dict[str, Any]:
    """Validate ``values`` for dataclass ``cls``: unknown keys and wrong scalar types are errors."""
    known = {f.name: f for f in fields(cls) if f.name not in skip}
    out = {}
    for key, value in values.items():
        if key not in known:
            raise _fail(source, f"{prefix}.{key}", f"unknown key (known: {', '.join(sorted(known))})")
        f = known[key]
        default = f.default if f.default is not MISSING else None
        if default is None and f.default_factory is not MISSING:
            default = f.default_factory()
        out[key] = value if default is None else _check_value(source, f"{prefix}.{key}", value, default)
    return out


def _check_keys(source: str, prefix: str, values: dict[str, Any], allowed: dict[str, type]) -> None:
    for key, value in values.items():
        if key not in allowed:
            raise _fail(source, f"{prefix}.{key}", f"unknown key (known: {', '.join(sorted(allowed))})")
        _check_value(source, f"{prefix}.{key}", value, allowed[key])


def _folds(source: str, key: str, value: Any) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise _fail(source, key, f"must be a list of integers, got {value!r}")
    return [int(v) for v in value]


def _resolve_paths(options: dict[str, Any]) -> dict[str, Any]:
    out = dict(options)
    for key in _PATH_OPTIONS & set(out):
        value = out[key]
        out[key] = [Path(v) for v in value] if isinstance(value, list) else Path(value)
    return out


def parse_experiment(data: dict[str, Any], source: str = "<config>") -> Experiment:
    """Validate a parsed TOML document."""
    allowed = ("experiment", "data", "features", "normalization", "model", "train")
    for key in data:
        if key not in allowed:
            raise _fail(source, key, f"unknown table (known: {', '.join(allowed)})")
    exp = _table(source, data, "experiment")
    _check_keys(source, "experiment", exp, _EXPERIMENT_KEYS)
    name = exp.get("name", Path(source).stem)
    mode = exp.get("mode", "single")
    if mode not in MODES:
        raise _fail(source, "experiment.mode", f"must be one of {', '.join(MODES)}, got {mode!r}")

    data_table = dict(_table(source, data, "data"))
    reader = data_table.pop("reader", None)
    if not isinstance(reader, str):
        raise _fail(source, "data.reader", "required: esc50, folders or json")
    folds = _folds(source, "data.folds", data_table.pop("folds")) if "folds" in data_table else None
    val_folds = _folds(source, "data.val_folds", data_table.pop("val_folds", []))
    try:
        known_options = reader_options(reader)
    except ValueError as exc:
        raise _fail(source, "data.reader", str(exc)) from None
    for key in data_table:
        if key not in known_options:
            raise _fail(
                source,
                f"data.{key}",
                f"unknown key (known: reader, folds, val_folds, {', '.join(known_options)})",
            )
    if mode == "single" and not val_folds:
        raise _fail(
            source, "data.val_folds", 'required with mode "single" (use mode "full" to train on all folds)'
        )

    features = FeatureConfig(
        **_dataclass_values(source, "features", FeatureConfig, _table(source, data, "features"))
    )
    norm_values = _dataclass_values(
        source, "normalization", Normalization, _table(source, data, "normalization")
    )
    normalization = Normalization(**norm_values)

    model = dict(_table(source, data, "model"))
    init = _init_path(source, model.pop("init", None))
    arch = model.pop("arch", None)
    model_config = model.pop("config", {})
    if model:
        raise _fail(source, f"model.{next(iter(model))}", "unknown key (known: arch, config, init)")
    if not isinstance(model_config, dict):
        raise _fail(source, "model.config", "must be a table")
    if init is not None:
        try:
            settings = init_settings(init, data)
        except ValueError as exc:
            raise _fail(source, "model.init", str(exc)) from None
        arch, model_config = settings.arch, settings.model_config
        features, normalization = settings.features, settings.normalization
    if arch not in available_archs():
        raise _fail(source, "model.arch", f"must be one of {', '.join(available_archs())}, got {arch!r}")
    _dataclass_values(source, "model.config", config_class(arch), model_config)

    train_table = dict(_table(source, data, "train"))
    augment = train_table.pop("augment", {})
    if not isinstance(augment, dict):
        raise _fail(source, "train.augment", "must be a table")
    sequences = train_table.pop("sequences", {})
    if not isinstance(sequences, dict):
        raise _fail(source, "train.sequences", "must be a table")
    distill = train_table.pop("distill", {})
    if not isinstance(distill, dict):
        raise _fail(source, "train.distill", "must be a table")
    skip = ("augment", "sequences", "distill")
    train_values = _dataclass_values(source, "train", TrainConfig, train_table, skip=skip)
    try:
        aug = AugmentConfig(**_dataclass_values(source, "train.augment", AugmentConfig, augment))
    except ValueError as exc:
        raise _fail(source, "train.augment", str(exc)) from None
    try:
        if isinstance(distill.get("teachers"), str):  # one teacher may be named without a list
            distill = {**distill, "teachers": [distill["teachers"]]}
        dist = DistillConfig(**_dataclass_values(source, "train.distill", DistillConfig, distill))
    except ValueError as exc:
        raise _fail(source, "train.distill", str(exc)) from None
    try:
        seq = SequenceConfig(**_dataclass_values(source, "train.sequences", SequenceConfig, sequences))
    except ValueError as exc:
        raise _fail(source, "train.sequences", str(exc)) from None
    output_dir = Path(exp.get("output_dir", f"runs/{name}"))
    cache = exp.get("cache_dir", ".cache/fbank")
    return Experiment(
        source=source,
        name=name,
        output_dir=output_dir,
        cache_dir=Path(cache) if cache else None,
        mode=mode,
        reader=reader,
        reader_options=_resolve_paths(data_table),
        folds=folds,
        val_folds=val_folds,
        features=features,
        normalization=normalization,
        arch=arch,
        model_config=dict(model_config),
        train=TrainConfig(augment=aug, sequences=seq, distill=dist, **train_values),
        raw=data,
        init=init,
    )


def _init_path(source: str, value: Any) -> Path | None:
    """``[model] init``: a checkpoint file or a shipped model's name."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(source, "model.init", f"must be a checkpoint path or a model name, got {value!r}")
    path = resolve_init(value)
    if not path.is_file():
        raise _fail(source, "model.init", f"{value}: no such checkpoint file")
    return path


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str = "--set") -> dict[str, Any]:
    """``["train.epochs=2", "experiment.mode='cv'"]`` -> a copy of ``data`` with those keys set."""
    out = json.loads(json.dumps(data))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ExperimentConfigError(f"{source}: {item!r} is not KEY=VALUE")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()  # a bare word: take it as a string
        parts = key.strip().split(".")
        table = out
        for part in parts[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ExperimentConfigError(f"{source}: {key} is not inside a table")
        table[parts[-1]] = value
    return out


def load_experiment(
    path: str | Path, overrides: list[str] | None = None, init: str | None = None
) -> Experiment:
    """Read and validate a TOML experiment file (with optional ``KEY=VALUE`` overrides and an init
    checkpoint that starts it as fine-tuning, see ``training.finetune_recipe``)."""
    path = Path(path)
    data = load_toml(path, ExperimentConfigError)
    data, notes = with_init(data, init, {item.partition("=")[0].strip() for item in overrides or []})
    if overrides:
        data = apply_overrides(data, overrides)
    exp = parse_experiment(data, str(path))
    exp.init_notes = notes
    return exp


def load_clip_set(exp: Experiment) -> ClipSet:
    """The experiment's dataset, limited to ``folds``."""
    clip_set = read_dataset(exp.reader, **exp.reader_options)
    if exp.folds is not None:
        clip_set = clip_set.subset(folds=exp.folds)
    if not clip_set.clips:
        raise ExperimentConfigError(f"{exp.source}: data: no clips in folds {exp.folds}")
    return clip_set


def run_plan(exp: Experiment, clip_set: ClipSet) -> list[tuple[str, list[int] | None]]:
    """(run name, held-out folds or None) for every run the experiment makes."""
    available = clip_set.folds()
    if exp.mode == "full":
        return [("full", None)]
    if exp.mode == "single":
        missing = sorted(set(exp.val_folds) - set(available))
        if missing:
            raise ExperimentConfigError(f"{exp.source}: data.val_folds: folds {missing} have no clips")
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
        extra={"experiment": exp.name},
    )


def filled_model_config(exp: Experiment, clip_set: ClipSet) -> dict[str, Any]:
    """The arch's full config: the user's values, plus sizes taken from the data where the config has them."""
    known = {f.name for f in fields(config_class(exp.arch))}
    derived = {
        "num_classes": len(clip_set.labels),
        "num_mel_bins": exp.features.num_mel_bins,
        "target_frames": exp.normalization.target_frames,
    }
    values = dict(exp.model_config)
    for key in FILLED_FROM_DATA:
        if key in known and key not in values:
            values[key] = derived[key]
    try:
        return config_to_dict(make_config(exp.arch, values))
    except (TypeError, ValueError) as exc:
        raise ExperimentConfigError(f"{exp.source}: model.config: {exc}") from None


def _arrays(exp: Experiment, clip_set: ClipSet) -> tuple[np.ndarray, np.ndarray]:
    x = cached_fbanks(clip_set.clips, exp.features, exp.cache_dir, exp.normalization.target_frames)
    return x, clip_set.targets()


def run_one(
    exp: Experiment,
    clip_set: ClipSet,
    run_name: str,
    held_out: list[int] | None,
    resume: bool,
    progress: bool,
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
    torch.manual_seed(exp.train.seed)  # the initial weights are part of what a seed reproduces
    model = build_model(exp.arch, model_config)
    if exp.init is not None:
        info.extra["init"] = load_init_weights(model, exp.init, list(clip_set.labels))
        print(f"{run_name}: {info.extra['init']}", flush=True)
    val = _arrays(exp, val_set) if val_set is not None else None
    teacher = None
    if exp.train.distill.enabled:
        streams = exp.train.sequences.enabled
        teacher = build_teacher(exp.train.distill, train_set.clips, held_out, info, exp.cache_dir, streams)
        info.extra["distill"] = {"teachers": [str(p) for p in teacher.paths], "online": teacher.online}
    train = _arrays(exp, train_set)
    result = train_model(model, train, val, exp.train, info, out_dir, resume, progress, teacher)
    entry: dict[str, Any] = {
        "run": run_name,
        "checkpoint": str(result.checkpoint),
        "train_clips": len(train_set.clips),
        "train_seconds": result.train_seconds,
        "final_loss": result.history[-1]["loss"] if result.history else None,
    }
    if "init" in info.extra:
        entry["init"] = info.extra["init"]
    if val_set is not None:
        from models.checkpoint import load_checkpoint

        trained, trained_info = load_checkpoint(result.checkpoint)
        report = evaluate_clip_set(trained, trained_info, val_set, out_dir / "eval", exp.cache_dir, run_name)
        entry.update({"val_folds": held_out, "val_clips": len(val_set.clips), "report": report})
    return entry


def _mean_std(values: list[float | None]) -> dict[str, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(present)), "std": float(np.std(present))}


def summarize(exp: Experiment, entries: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
    """Per-run metrics, their mean and std, and (cv) the pooled confusion matrix over all folds."""
    summary: dict[str, Any] = {
        "experiment": exp.name,
        "mode": exp.mode,
        "arch": exp.arch,
        "train": asdict(exp.train),
        "runs": [{k: v for k, v in e.items() if k != "report"} for e in entries],
    }
    reports = [e["report"] for e in entries if "report" in e]
    for e in summary["runs"]:
        report = next((x["report"] for x in entries if x["run"] == e["run"] and "report" in x), None)
        if report is not None:
            e.update({k: report[k] for k in ("accuracy", "macro_f1", "mAP")})
    if reports:
        summary["metrics"] = {k: _mean_std([r[k] for r in reports]) for k in ("accuracy", "macro_f1", "mAP")}
        pooled = np.sum([np.array(r["confusion_matrix"]) for r in reports], axis=0)
        summary["pooled_confusion_matrix"] = pooled.tolist()
        summary["pooled_per_class_accuracy"] = dict(
            zip(
                labels,
                [None if np.isnan(v) else float(v) for v in metrics.per_class_accuracy(pooled)],
                strict=True,
            )
        )
    return summary


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as a markdown table (runs, then mean ± std)."""

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    lines = [
        f"# {summary['experiment']} ({summary['arch']}, mode {summary['mode']})",
        "",
        "| run | held-out folds | clips | accuracy | macro-F1 | mAP | train s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in summary["runs"]:
        if "val_folds" not in run:  # mode full: nothing held out, so nothing measured (not "n/a")
            lines.append(no_held_out_row(run))
            continue
        folds = ",".join(str(f) for f in run.get("val_folds") or []) or "-"
        lines.append(
            f"| {run['run']} | {folds} | {run.get('val_clips', '-')} | {fmt(run.get('accuracy'))} | "
            f"{fmt(run.get('macro_f1'))} | {fmt(run.get('mAP'))} | {run['train_seconds']:.0f} |"
        )
    if "metrics" in summary:
        m = summary["metrics"]
        cells = " | ".join(
            "n/a" if m[k]["mean"] is None else f"{m[k]['mean']:.4f} ± {m[k]['std']:.4f}"
            for k in ("accuracy", "macro_f1", "mAP")
        )
        lines += ["", f"Mean ± std over runs: accuracy | macro-F1 | mAP = {cells}"]
    if summary["mode"] == "full":
        lines += ["", FULL_MODE_NOTE]
    return "\n".join(lines) + "\n"


def run_experiment(exp: Experiment, resume: bool = True, progress: bool = True) -> dict[str, Any]:
    """Run every training the experiment asks for; write and return the summary."""
    clip_set = load_clip_set(exp)
    plan = run_plan(exp, clip_set)
    if exp.train.distill.enabled:  # refuse a dishonest or unusable teacher before any run trains
        vet_teachers(exp.train.distill, [held_out for _, held_out in plan], clip_set.labels)
    exp.output_dir.mkdir(parents=True, exist_ok=True)
    (exp.output_dir / "config.json").write_text(json.dumps(exp.raw, indent=1, default=str))
    entries = [run_one(exp, clip_set, name, held_out, resume, progress) for name, held_out in plan]
    summary = summarize(exp, entries, clip_set.labels)
    (exp.output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    (exp.output_dir / "summary.md").write_text(summary_markdown(summary))
    if "pooled_confusion_matrix" in summary and len(plan) > 1:
        pooled = np.array(summary["pooled_confusion_matrix"])
        metrics.plot_confusion_matrix(
            pooled, clip_set.labels, exp.output_dir / "confusion.png", f"{exp.name} (all folds)"
        )
    return summary


FULL_MODE_NOTE = (
    "Mode full trains on every clip and holds none out, so it measures no accuracy: the figures of this "
    "recipe are those of its single or cv runs; score the checkpoint on other data with `streamd evaluate`."
)


def no_held_out_row(run: dict[str, Any]) -> str:
    """The summary row of a run that held nothing out (mode full): its training clips, no figures."""
    return (
        f"| {run['run']} | none (trained on all {run.get('train_clips', '?')} clips) | 0 | not measured | "
        f"not measured | not measured | {run['train_seconds']:.0f} |"
    )
