"""Class names in index order from a labels CSV: AudioSet ``class_labels_indices.csv`` (``display_name``),
ESC-50's metadata (``target`` + ``category``, one row per clip), or a ``label`` / ``name`` column."""

from __future__ import annotations

import csv
from pathlib import Path

from streamd.errors import ConfigError


def read_labels_csv(path: Path) -> list[str]:
    """Class names in index order from a labels CSV (see the module docstring for the formats)."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give the labels CSV file")
    if not path.is_file():
        raise ConfigError(f"{path}: no such labels file")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [
                {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
                for row in csv.DictReader(f)
            ]
    except OSError as exc:  # unreadable (permissions, an I/O error): one line, exit 2 as any bad option
        raise ConfigError(f"{path}: cannot read the labels file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; give the labels CSV file") from None
    except csv.Error as exc:
        raise ConfigError(f"{path}: malformed labels CSV ({exc})") from None
    if not rows:
        raise ConfigError(f"{path}: no labels")
    columns = set(rows[0])
    try:
        if "display_name" in columns:  # AudioSet: index,mid,display_name
            ordered = sorted(rows, key=lambda r: int(r["index"])) if "index" in columns else rows
            return [r["display_name"] for r in ordered]
        if {"target", "category"} <= columns:  # ESC-50 meta: one row per clip
            names: dict[int, str] = {}
            for r in rows:
                if names.setdefault(int(r["target"]), r["category"]) != r["category"]:
                    raise ConfigError(f"{path}: target {r['target']} has two categories")
            if sorted(names) != list(range(len(names))):
                raise ConfigError(f"{path}: targets are not 0..N-1")
            return [names[i] for i in range(len(names))]
        for name in ("label", "name"):
            if name in columns:
                ordered = sorted(rows, key=lambda r: int(r["index"])) if "index" in columns else rows
                return [r[name] for r in ordered]
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"{path}: malformed labels CSV ({exc})") from None
    raise ConfigError(
        f"{path}: need a display_name, target+category, label or name column; got {sorted(columns)}"
    )
