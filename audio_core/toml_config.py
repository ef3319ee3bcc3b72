"""The one TOML loader of the daemon config (``streamd.config``) and the experiment config
(``training.experiment_spec``), and the typed check of a TOML table against a dataclass.

Every message names the file (``load_toml``) or the dotted key (``check_table``); the caller's own error
class is raised, so each config keeps its exception type. Pure module: no threads, sockets or devices.
"""

from __future__ import annotations

import tomllib
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any


def load_toml(path: str | Path, error: type[Exception]) -> dict[str, Any]:
    """The table in ``path``; a missing, unreadable or invalid file is ``error("<path>: ...")``."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise error(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read config file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: invalid TOML ({exc})") from None


def type_name(hint: Any) -> str:
    """The type a TOML value must have (``None`` cannot be written in TOML, so it is not named)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(hint) if a is not type(None))
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check_value(value: Any, hint: Any, where: str, error: type[Exception]) -> Any:
    """``value`` if it fits the type ``hint`` (ints accepted for floats; a list for a ``tuple[...]``,
    returned as a tuple), else ``error`` naming ``where``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):  # from JSON (a checkpoint), never TOML
            return None
        for option in typing.get_args(hint):
            if option is type(None):
                continue
            try:
                return check_value(value, option, where, error)
            except error:
                pass
        raise error(f"{where}: expected {type_name(hint)}, got {type(value).__name__} {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise error(f"{where}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(hint)
        return [check_value(v, item, f"{where}[{i}]", error) for i, v in enumerate(value)]
    if origin is tuple:
        return _check_tuple(value, typing.get_args(hint), where, error)
    if origin is dict:
        if not isinstance(value, dict):
            raise error(f"{where}: expected a table, got {type(value).__name__}")
        _, item = typing.get_args(hint)
        return {str(k): check_value(v, item, f"{where}.{k}", error) for k, v in value.items()}
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise error(f"{where}: expected {type_name(hint)}, got {type(value).__name__} {value!r}")


def _check_tuple(value: Any, items: tuple[Any, ...], where: str, error: type[Exception]) -> tuple[Any, ...]:
    """A TOML array as a tuple: ``tuple[int, ...]`` any length, ``tuple[int, str]`` exactly that many."""
    if not isinstance(value, list):
        raise error(f"{where}: expected a list, got {type(value).__name__}")
    if len(items) == 2 and items[1] is Ellipsis:
        items = (items[0],) * len(value)
    elif len(value) != len(items):
        raise error(f"{where}: expected a list of {len(items)} items, got {len(value)}")
    pairs = enumerate(zip(value, items, strict=True))
    return tuple(check_value(v, item, f"{where}[{i}]", error) for i, (v, item) in pairs)


def check_table(cls: type, table: Any, where: str, error: type[Exception]) -> dict[str, Any]:
    """Check a TOML table against dataclass ``cls``: known keys, right types; nested tables recurse."""
    if not isinstance(table, dict):
        raise error(f"{where}: expected a table, got {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in names:
            raise error(f"{where}.{key}: unknown key (known: {', '.join(sorted(names))})".lstrip("."))
        hint = hints[key]
        sub = f"{where}.{key}".lstrip(".")
        if is_dataclass(hint):
            out[key] = check_table(hint, value, sub, error)  # type: ignore[arg-type]
        else:
            out[key] = check_value(value, hint, sub, error)
    return out


def merge_into(table: dict[str, Any], key: str, value: Any) -> None:
    """Set ``table[key] = value``, except that a table given for a table merges into it key by key (an
    override ``train.augment={mixup_prob=0.1}`` changes that key and keeps the table's others)."""
    old = table.get(key)
    if isinstance(value, dict) and isinstance(old, dict):
        for inner, item in value.items():
            merge_into(old, inner, item)
    else:
        table[key] = value


def dotted_keys(table: dict[str, Any], prefix: str = "") -> set[str]:
    """Every dotted key that holds a value in ``table`` (``train.epochs``, also from ``train={epochs=3}``)."""
    found = {prefix + k for k, v in table.items() if not isinstance(v, dict) or not v}
    return found.union(*(dotted_keys(v, f"{prefix}{k}.") for k, v in table.items() if isinstance(v, dict)))
