"""Claiming a training output folder for one run of ``streamd train`` (a TOML experiment, each of its
runs' folders, or ``--data``'s output): one command at a time, through ``train.lock`` held until the last
file is written. (``--fresh`` removes a run's own saved state when that run starts: ``training.loop``.)"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

from audio_core.output_lock import lock_output

LOCK_FILE = "train.lock"


def claim_output(folder: Path) -> IO[str]:
    """Create and lock ``folder`` for this command (keep the returned file open for the run: ``with``); a
    ValueError when another command holds it, or it cannot be created (a check creating nothing passed:
    ``/proc/x`` looks writable)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{folder}: cannot create the folder ({exc.strerror or exc})") from None
    held, note = lock_output(
        folder / LOCK_FILE,
        str(folder),
        f"{folder} is being trained into by another streamd train: wait for it, or give another --out",
    )
    if note:
        print(f"streamd: warning: {note}", file=sys.stderr, flush=True)
    return held
