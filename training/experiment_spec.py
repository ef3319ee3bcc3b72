"""The experiment spec: a TOML experiment read, overridden (``--set``, ``--init``) and checked.

A config has these tables (every key optional unless marked; unknown keys are rejected, naming the file
and the key):

- ``[experiment]`` ``name``, ``output_dir`` (default ``runs/<name>``), ``cache_dir`` (fbank cache,
  default ``.cache/fbank``), ``mode``: ``"single"`` (train on ``folds`` minus ``val_folds``, validate on
  ``val_folds``), ``"cv"`` (each fold of ``folds`` held out in turn) or ``"full"`` (all ``folds``, no
  validation);
- ``[data]`` ``reader`` (required: one of ``training.readers.READERS``) and that reader's options
  (``training.readers``), plus ``folds`` (default: all) and ``val_folds``;
- ``[features]`` ``FeatureConfig`` fields; ``[normalization]`` ``Normalization`` fields;
- ``[model]`` ``arch`` (required, except where only ``[data]`` is read: ``evaluate --config``) and
  ``[model.config]`` (the arch's config fields; ``num_classes``, ``num_mel_bins`` and ``target_frames``
  are filled in from the data when the config has them);
- ``[train]`` ``TrainConfig`` fields, ``[train.augment]`` ``AugmentConfig`` fields, ``[train.sequences]``
  ``SequenceConfig`` fields (recurrent models trained on streams of clips) and ``[train.distill]``
  ``DistillConfig`` fields (teachers; ``training.distill``).

Types are checked by the one TOML checker (``audio_core.toml_config.check_table``); bounds and choices by
each section itself (``TrainConfig``, ``AugmentConfig``, ``SequenceConfig``, ``DistillConfig``,
``ExperimentSection``, ``FeatureSection``, ``NormalizationSection``: rules next to their fields,
``audio_core.checks``), and the model is run once on an empty window of the configured size
(``training.model_input``). Every error is one line naming the file and the key. Relative paths are
resolved against the current directory. Running it is ``training.experiment``.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audio_core.checks import check_fields, rule
from audio_core.toml_config import check_table, dotted_keys, load_toml, merge_into
from models.common import FeatureConfig, Normalization
from models.registry import available_archs, config_class
from training.finetune_recipe import with_init
from training.init_from import init_settings, resolve_init
from training.model_input import (
    FeatureSection,
    NormalizationSection,
    check_model_input,
    checked_features,
    checked_normalization,
)
from training.readers import READERS, option_problem, reader_options
from training.train_config import TrainConfig

MODES = ("single", "cv", "full")


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


@dataclass
class ExperimentSection:
    """The ``[experiment]`` table; ``mode``'s choices sit next to it and are checked on creation."""

    name: str | None = None  # default: the config file's stem
    output_dir: str | None = None  # default: runs/<name>
    cache_dir: str = ".cache/fbank"  # empty: no fbank cache
    mode: str = rule("single", choices=MODES)

    def __post_init__(self) -> None:
        check_fields(self, "experiment", ExperimentConfigError)


_PATH_OPTIONS = {"csv_path", "audio_dir", "root", "datafiles", "label_csv"}


def _fail(source: str, key: str, problem: str) -> ExperimentConfigError:
    return ExperimentConfigError(f"{source}: {key}: {problem}")


def _table(source: str, data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise _fail(source, key, "must be a table")
    return value


def _section(source: str, cls: type, table: Any, where: str, build: Callable[..., Any] | None = None) -> Any:
    """Dataclass ``cls`` (or ``build(values)``) from a TOML table: its types checked by the shared checker,
    then its own rules by the section itself; an error is one line naming the file and the key."""
    try:
        values = check_table(cls, table, where, ValueError)
        return build(values) if build is not None else cls(**values)
    except ValueError as exc:
        raise ExperimentConfigError(f"{source}: {exc}") from None


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


def parse_experiment(data: dict[str, Any], source: str = "<config>", need_model: bool = True) -> Experiment:
    """Validate a parsed TOML document; without ``need_model`` one with no ``[model]`` table is read
    for its data only (``arch`` empty; no ``val_folds`` and no mode given: mode "full", all folds)."""
    allowed = ("experiment", "data", "features", "normalization", "model", "train")
    for key in data:
        if key not in allowed:
            raise _fail(source, key, f"unknown table (known: {', '.join(allowed)})")
    exp = _section(source, ExperimentSection, data.get("experiment", {}), "experiment")
    name = exp.name or Path(source).stem
    mode = exp.mode
    data_only = not need_model and "model" not in data

    data_table = dict(_table(source, data, "data"))
    reader = data_table.pop("reader", None)
    if not isinstance(reader, str):
        raise _fail(source, "data.reader", f"required: {', '.join(READERS)}")
    folds = _folds(source, "data.folds", data_table.pop("folds")) if "folds" in data_table else None
    val_folds = _folds(source, "data.val_folds", data_table.pop("val_folds", []))
    try:
        reader_options(reader)
    except ValueError as exc:
        raise _fail(source, "data.reader", str(exc)) from None
    for key, value in data_table.items():  # each option known to the reader, and of its type
        if problem := option_problem(reader, key, value):
            raise _fail(source, f"data.{key}", problem)
    if data_only and not val_folds and "mode" not in data.get("experiment", {}):
        mode = "full"  # data named for evaluation, not a training: no held-out folds named, all of them
    if mode == "single" and not val_folds:
        raise _fail(
            source, "data.val_folds", 'required with mode "single" (use mode "full" to train on all folds)'
        )

    features = parse_features(data.get("features", {}), source)
    normalization = _section(
        source, NormalizationSection, data.get("normalization", {}), "normalization", checked_normalization
    )

    init, arch, model_config = None, "", {}
    if not data_only:
        init, arch, model_config, features, normalization = _model(source, data, features, normalization)

    train_table = _one_teacher_as_list(data.get("train", {}))
    train = _section(source, TrainConfig, train_table, "train", build=TrainConfig.from_dict)
    return Experiment(
        source=source,
        name=name,
        output_dir=Path(exp.output_dir or f"runs/{name}"),
        cache_dir=Path(exp.cache_dir) if exp.cache_dir else None,
        mode=mode,
        reader=reader,
        reader_options=_resolve_paths(data_table),
        folds=folds,
        val_folds=val_folds,
        features=features,
        normalization=normalization,
        arch=arch,
        model_config=dict(model_config),
        train=train,
        raw=data,
        init=init,
    )


def _model(
    source: str, data: dict[str, Any], features: FeatureConfig, normalization: Normalization
) -> tuple[Path | None, str, dict[str, Any], FeatureConfig, Normalization]:
    """``[model]`` checked: (init, arch, config, features, normalization), an init's where it names one."""
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
    _section(source, config_class(arch), model_config, "model.config", build=dict)  # the types only
    try:  # the window and the features, as the model will get them
        check_model_input(arch, model_config, features, normalization)
    except ValueError as exc:
        raise ExperimentConfigError(f"{source}: {exc}") from None
    return init, arch, model_config, features, normalization


def parse_features(table: Any, source: str = "<config>") -> FeatureConfig:
    """The ``[features]`` table, its types and the fbank's bounds checked (``training.model_input``)."""
    return _section(source, FeatureSection, table, "features", checked_features)


def _one_teacher_as_list(train: Any) -> Any:
    """``[train.distill] teachers = "PATH"``: one teacher may be named without a list."""
    distill = train.get("distill") if isinstance(train, dict) else None
    if isinstance(distill, dict) and isinstance(distill.get("teachers"), str):
        return {**train, "distill": {**distill, "teachers": [distill["teachers"]]}}
    return train


def _init_path(source: str, value: Any) -> Path | None:
    """``[model] init``: a checkpoint file or a shipped model's name."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(source, "model.init", f"must be a checkpoint path or a model name, got {value!r}")
    try:
        return resolve_init(value)
    except ValueError as exc:
        raise _fail(source, "model.init", str(exc)) from None


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str = "--set") -> dict[str, Any]:
    """``["train.epochs=2", "experiment.mode='cv'"]`` -> a copy of ``data`` with those keys set (a table
    given, ``train.augment={mixup_prob=0.1}``, sets its keys and keeps the table's others)."""
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
        merge_into(table, parts[-1], value)  # a table merges into the table there, key by key
    return out


def load_experiment(
    path: str | Path,
    overrides: list[str] | None = None,
    init: str | None = None,
    need_model: bool = True,
) -> Experiment:
    """Read and validate a TOML experiment file (with optional ``KEY=VALUE`` overrides and an init
    checkpoint that starts it as fine-tuning, see ``training.finetune_recipe``). A file with no ``[model]``
    table is refused, or without ``need_model`` read for its data alone (``evaluate --config``)."""
    data, notes = resolved_document(path, overrides, init)
    exp = parse_experiment(data, str(path), need_model)
    exp.init_notes = notes
    return exp


def resolved_document(
    path: str | Path, overrides: list[str] | None = None, init: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The TOML document of an experiment file after ``init``'s fine-tuning recipe and the overrides,
    unchecked, with the notes the recipe made (``load_experiment`` parses it)."""
    data = load_toml(Path(path), ExperimentConfigError)
    data, notes = with_init(data, init, dotted_keys(apply_overrides({}, overrides or [])))
    if overrides:
        data = apply_overrides(data, overrides)
    return data, notes
