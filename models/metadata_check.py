"""Bounds on every field of a checkpoint's metadata, checked once at load.

``check_metadata`` takes the raw ``streamd`` JSON object of a checkpoint header and returns the problem
with the first bad field as ``"<field>: <what is wrong>"`` (``None`` when all is well), so that loading
can refuse a crafted or corrupt header with one line naming the file and the field before anything is
allocated or published.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

MAX_LABELS = 100_000
MAX_LABEL_CHARS = 256  # the longest label a published message may carry
WINDOW_TYPES = ("hanning", "povey", "hamming", "rectangular", "blackman")
MAX_CONFIG_INT = 1_000_000  # any integer of an architecture config (layers, widths, frames, ...)
MAX_CONFIG_ABS_FLOAT = 1e6
MAX_TARGET_FRAMES = 6000  # a model's own window: at most 60 s of 10-ms frames, the daemon's longest window
# normalisation statistics: |mean| and std of log-mel values at most this (the experiment config's
# ``[normalization]`` rules are these, ``training.model_input``: what a checkpoint refuses is refused there)
MAX_NORM_MEAN = 1e4
MAX_NORM_STD = 1e4

# field -> (check, what it must be)
_Check = Callable[[Any], bool]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int_in(lo: int, hi: int) -> _Check:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _float_in(lo: float, hi: float, *, lo_open: bool = False) -> _Check:
    return lambda v: _number(v) and (lo < v if lo_open else lo <= v) and v <= hi


_FEATURES: dict[str, tuple[_Check, str]] = {
    "sample_rate": (_int_in(1000, 384_000), "an integer rate in [1000, 384000] Hz"),
    "num_mel_bins": (_int_in(1, 1024), "an integer in [1, 1024]"),
    "frame_length_ms": (_float_in(0.0, 1000.0, lo_open=True), "in (0, 1000] ms"),
    "frame_shift_ms": (_float_in(0.0, 1000.0, lo_open=True), "in (0, 1000] ms"),
    "window_type": (lambda v: v in WINDOW_TYPES, f"one of {', '.join(WINDOW_TYPES)}"),
    "preemphasis": (_float_in(0.0, 1.0), "in [0, 1]"),
    "remove_dc_offset": (lambda v: isinstance(v, bool), "true or false"),
    "low_freq": (_float_in(0.0, 192_000.0), "in [0, 192000] Hz"),
    "high_freq": (_float_in(-192_000.0, 192_000.0), "in [-192000, 192000] Hz"),
    "energy_floor_eps": (lambda v: isinstance(v, bool), "true or false"),
}
_NORMALIZATION: dict[str, tuple[_Check, str]] = {
    "mean": (
        _float_in(-MAX_NORM_MEAN, MAX_NORM_MEAN),
        f"a finite number in [{-MAX_NORM_MEAN:.0f}, {MAX_NORM_MEAN:.0f}]",
    ),
    "std": (_float_in(0.0, MAX_NORM_STD, lo_open=True), f"in (0, {MAX_NORM_STD:.0f}]"),
    "target_frames": (_int_in(1, MAX_TARGET_FRAMES), f"an integer in [1, {MAX_TARGET_FRAMES}] (60 s)"),
}


def check_metadata(data: Any) -> str | None:
    """The first problem of a checkpoint's metadata object as ``"field: problem"``, or None."""
    if not isinstance(data, dict):
        return f"metadata: expected a JSON object, got {type(data).__name__}"
    if not isinstance(data.get("arch"), str) or not data["arch"]:
        return "arch: expected a non-empty string"
    for problem in (
        _check_labels(data.get("labels")),
        _check_table("features", data.get("features", {}), _FEATURES),
        _check_table("normalization", data.get("normalization", {}), _NORMALIZATION),
        _check_config("config", data.get("config", {})),
    ):
        if problem:
            return problem
    if "multi_label" in data and not isinstance(data["multi_label"], bool):
        return "multi_label: expected true or false"
    if "extra" in data and not isinstance(data["extra"], dict):
        return "extra: expected an object"
    return None


def _check_labels(labels: Any) -> str | None:
    if not isinstance(labels, list) or not labels:
        return "labels: expected a non-empty list of names"
    if len(labels) > MAX_LABELS:
        return f"labels: {len(labels)} labels (at most {MAX_LABELS})"
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            return f"labels[{i}]: expected a non-empty string, got {label!r:.40}"
        if len(label) > MAX_LABEL_CHARS:
            return f"labels[{i}]: {len(label)} characters (at most {MAX_LABEL_CHARS})"
        if not label.isprintable():
            return f"labels[{i}]: holds control characters"
    seen: set[str] = set()
    for label in labels:
        if label in seen:
            return f"labels: {label!r} appears twice"
        seen.add(label)
    return None


def _check_table(name: str, table: Any, rules: dict[str, tuple[_Check, str]]) -> str | None:
    if not isinstance(table, dict):
        return f"{name}: expected an object"
    for key, value in table.items():
        if key in rules and not rules[key][0](value):
            return f"{name}.{key}: must be {rules[key][1]}, got {value!r:.40}"
    if name == "features":
        length, shift = table.get("frame_length_ms", 25.0), table.get("frame_shift_ms", 10.0)
        if shift > length:
            return f"features.frame_shift_ms: {shift} is longer than frame_length_ms {length}"
        rate = table.get("sample_rate", 16000)
        if rate * shift / 1000.0 < 1:
            return f"features.frame_shift_ms: {shift} ms is less than one sample at {rate} Hz"
    return None


def _check_config(where: str, value: Any) -> str | None:
    """An architecture config: nested objects/lists of finite, bounded numbers, strings and booleans."""
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _check_config(f"{where}.{key}", item)
            if problem:
                return problem
    elif isinstance(value, list):
        if len(value) > 10_000:
            return f"{where}: a list of {len(value)} items"
        for i, item in enumerate(value):
            problem = _check_config(f"{where}[{i}]", item)
            if problem:
                return problem
    elif isinstance(value, bool) or value is None:
        return None
    elif isinstance(value, int):
        if not 0 <= value <= MAX_CONFIG_INT:
            return f"{where}: must be an integer in [0, {MAX_CONFIG_INT}], got {value}"
    elif isinstance(value, float):
        if not (math.isfinite(value) and abs(value) <= MAX_CONFIG_ABS_FLOAT):
            return f"{where}: must be a finite number of at most {MAX_CONFIG_ABS_FLOAT:g}, got {value!r}"
    elif isinstance(value, str):
        if len(value) > 1000:
            return f"{where}: a string of {len(value)} characters"
    else:
        return f"{where}: unexpected value of type {type(value).__name__}"
    return None
