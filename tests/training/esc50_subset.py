"""Test helpers: where the real ESC-50 data sits beside the repository, and small subsets of it."""

from __future__ import annotations

import csv
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
ESC50 = SHARED / "data" / "esc50"
ESC50_CSV = ESC50 / "meta" / "esc50.csv"


def esc50_rows() -> list[dict[str, str]]:
    """All rows of the real ESC-50 metadata file."""
    with ESC50_CSV.open(newline="") as f:
        return list(csv.DictReader(f))


def small_esc50_rows(
    categories: tuple[str, ...], per_class_per_fold: int, folds: tuple[int, ...]
) -> list[dict]:
    """The first ``per_class_per_fold`` rows of every (category, fold) pair, in file order."""
    taken: dict[tuple[str, int], int] = {}
    out = []
    for row in esc50_rows():
        key = (row["category"], int(row["fold"]))
        if row["category"] in categories and key[1] in folds and taken.get(key, 0) < per_class_per_fold:
            taken[key] = taken.get(key, 0) + 1
            out.append(row)
    return out


def write_esc50_subset(
    dest: Path, categories: tuple[str, ...], per_class_per_fold: int, folds: tuple[int, ...]
) -> Path:
    """A small ESC-50-style CSV in ``dest`` that points at the real audio folder; returns the CSV path."""
    rows = small_esc50_rows(categories, per_class_per_fold, folds)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "subset.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_experiment(
    path: Path,
    csv_path: Path,
    audio_dir: Path,
    out_dir: Path,
    *,
    mode: str = "full",
    data: str = "",
    tables: str = "",
) -> Path:
    """A TOML experiment at ``path`` reading the ESC-50-style ``csv_path`` (its feature cache in ``cache/``
    beside ``path``, its runs in ``out_dir``), in ``mode``, with more ``[data]`` keys (``data``) and more
    tables after it (``tables``), both as TOML text; returns ``path``."""
    path.write_text(
        f"""
[experiment]
output_dir = "{out_dir}"
cache_dir = "{path.parent / "cache"}"
mode = "{mode}"
[data]
reader = "esc50"
csv_path = "{csv_path}"
audio_dir = "{audio_dir}"
{data}
{tables}
"""
    )
    return path
