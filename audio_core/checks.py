"""The one checker of config values: allowed choices and bounds, declared next to a dataclass's fields.

A config section (the daemon's ``[model]``, ``[windows]``, ...; the experiment's ``[train]``,
``[train.augment]``, ...) declares each rule on its field with ``rule(default, choices=..., gt=..., ge=...,
lt=..., le=...)`` and calls ``check_fields(self, "section", ErrorClass)`` in ``__post_init__``; the section is
then valid whenever it exists. Every message is one line naming the dotted key: ``section.key must be ...``.
Pure module: no threads, sockets or devices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import MISSING, field, fields
from typing import Any


def rule(
    default: Any = MISSING,
    *,
    default_factory: Callable[[], Any] | Any = MISSING,
    choices: Sequence[Any] | None = None,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> Any:
    """A dataclass field whose value must be one of ``choices`` and/or within the bounds (``None`` skips)."""
    choice = tuple(choices) if choices is not None else None
    metadata = {"choices": choice, "gt": gt, "ge": ge, "lt": lt, "le": le}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def check_choice(value: Any, choices: Sequence[Any], key: str, error: type[Exception] = ValueError) -> None:
    """``error("<key> must be one of a, b, got 'c'")`` unless ``value`` is one of ``choices``."""
    if value not in choices or isinstance(value, bool) != any(isinstance(c, bool) for c in choices):
        allowed = ", ".join(str(c) for c in choices)
        raise error(f"{key} must be one of {allowed}, got {value!r}")


def check_range(
    value: Any,
    key: str,
    error: type[Exception] = ValueError,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> None:
    """``error`` naming ``key`` unless ``value`` is a finite number ``> gt``, ``>= ge``, ``< lt`` and
    ``<= le``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(f"{key} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise error(f"{key} must be a finite number, got {value!r}")
    if gt is not None and not value > gt:
        raise error(f"{key} must be {'positive' if gt == 0 else f'> {gt:g}'}, got {value!r}")
    if ge is not None and not value >= ge:
        raise error(f"{key} must be >= {ge:g}, got {value!r}")
    if lt is not None and not value < lt:
        raise error(f"{key} must be below {lt:g}, got {value!r}")
    if le is not None and not value <= le:
        raise error(f"{key} must be at most {le:g}, got {value!r}")


def check_fields(obj: Any, section: str, error: type[Exception] = ValueError) -> None:
    """Check every field of dataclass ``obj`` declared with ``rule`` (``None`` values are not checked)."""
    for f in fields(obj):
        meta = f.metadata
        if "choices" not in meta:
            continue
        value = getattr(obj, f.name)
        if value is None:
            continue
        key = f"{section}.{f.name}"
        if meta["choices"] is not None:
            check_choice(value, meta["choices"], key, error)
        bounds = {bound: meta.get(bound) for bound in ("gt", "ge", "lt", "le")}
        if any(b is not None for b in bounds.values()):
            check_range(value, key, error, **bounds)


def choices_of(cls: type, name: str) -> tuple[Any, ...]:
    """The choices declared for field ``name`` of dataclass ``cls`` (for argparse ``choices=``)."""
    for f in fields(cls):
        if f.name == name and f.metadata.get("choices") is not None:
            return f.metadata["choices"]
    raise KeyError(f"{cls.__name__}.{name} declares no choices")
