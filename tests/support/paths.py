"""Where the repository and the real data beside it (``../shared``) are, wherever the checkout sits."""

from __future__ import annotations

import csv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared"
ESC50 = SHARED / "data" / "esc50"
ESC50_CSV = ESC50 / "meta" / "esc50.csv"
VIRTUAL_MIC_SCRIPT = REPO / "scripts" / "virtual_mic.sh"


def esc50_rows() -> list[dict[str, str]]:
    """The rows of ESC-50's metadata CSV."""
    with ESC50_CSV.open(newline="") as f:
        return list(csv.DictReader(f))


def esc50_labels() -> list[str]:
    """The 50 ESC-50 class names in target order."""
    names = {int(r["target"]): r["category"] for r in esc50_rows()}
    return [names[i] for i in sorted(names)]


def esc10_clips(n: int, fold: int = 1) -> list[Path]:
    """``n`` ESC-10 clips (5 s, 16 kHz mono FLAC) of one fold, in file name order."""
    rows = sorted(
        (r for r in esc50_rows() if r["esc10"] == "True" and r["fold"] == str(fold)),
        key=lambda r: r["filename"],
    )
    return [ESC50 / "audio" / r["filename"] for r in rows[:n]]


def clip_paths(n: int, fold: int = 1) -> list[Path]:
    """The first clip (by file name) of each of the first ``n`` classes in one fold."""
    first: dict[int, str] = {}
    for r in sorted(esc50_rows(), key=lambda r: r["filename"]):
        if r["fold"] == str(fold):
            first.setdefault(int(r["target"]), r["filename"])
    return [ESC50 / "audio" / first[target] for target in sorted(first)[:n]]
