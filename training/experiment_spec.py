"""The experiment spec: a TOML experiment read, overridden (``--set``, ``--init``) and checked.

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

Relative paths are resolved against the current directory. Running it is ``training.experiment``.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from audio_core.toml_config import load_toml
from models.common import FeatureConfig, Normalization
from models.registry import available_archs, config_class
from training.augment import AugmentConfig
from training.distill import DistillConfig
from training.finetune_recipe import with_init
from training.init_from import init_settings, resolve_init
from training.readers import reader_options
from training.sequences import SequenceConfig
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


_EXPERIMENT_KEYS = {"name": str, "output_dir": str, "cache_dir": str, "mode": str}
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
