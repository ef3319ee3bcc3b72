"""Claiming a training output folder for one run of ``streamd train`` (a TOML experiment or ``--data``):
one run at a time (``train.lock``, held from before any feature is made until the last file is written),
and with ``--fresh`` every saved training state under it removed at once, so that neither a second run
nor a Ctrl-C message can point back to the states being thrown away."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from audio_core.output_lock import lock_output

LOCK_FILE = "train.lock"
STATE_FILE = "train_state.safetensors"


def discard_states(folder: Path) -> list[Path]:
    """Remove every saved training state under ``folder``; returns the ones removed."""
    states = sorted(folder.rglob(STATE_FILE)) if folder.is_dir() else []
    for state in states:
        state.unlink(missing_ok=True)
    return states


def claim_output(folder: Path, resume: bool) -> IO[str]:
    """Create and lock ``folder`` for this run (keep the returned file open for the run: ``with``); a
    ValueError when another run holds it. Without ``resume`` the saved states under it are removed (said)."""
    folder.mkdir(parents=True, exist_ok=True)
    held, note = lock_output(
        folder / LOCK_FILE,
        str(folder),
        f"{folder} is being trained into by another streamd train: wait for it, or give another --out",
    )
    if note:
        print(f"warning: {note}", flush=True)
    if not resume:
        removed = discard_states(folder)
        if removed:
            print(
                f"starting over (--fresh): {len(removed)} saved training state(s) under {folder} removed",
                flush=True,
            )
    return held
