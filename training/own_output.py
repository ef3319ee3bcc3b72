"""Whose output a ``streamd train --data`` output folder holds: the data set its saved state or model was
trained on.

The default output is ``runs/<data set name>``, so two projects whose data folders share a name (say
``projA/data`` and ``projB/data``) default to the same folder. A run records its data set beside its
state (``choices.json``, ``DATA_SET_KEY``: the data folder, its name and the digests of its training
clips); a later run on another data set is refused with the line ``other_data_set_line`` (give
``--out``; ``--fresh`` overwrites), rather than told to start over, which would overwrite the first
project's model. Data that shares any clip with the recorded ones (the same data moved, or changed,
wherever it is) is the resume check's (``training.resume``) to judge.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from audio_core.audio_file import display_path
from training.own_data import OwnData
from training.trained_clips import KEY, clip_digest, record, recorded

DATA_SET_KEY = "data_set"  # in choices.json


def data_set_entry(root: Path, data: OwnData) -> dict[str, Any]:
    """What ``choices.json`` records of the data set trained on (``root``: ``--data``)."""
    return {"folder": str(root.resolve()), "name": data.clip_set.name, KEY: record(data.training_clips())}


def _saved_entry(out: Path, choices_file: str) -> dict[str, Any] | None:
    """The data set recorded in ``out``: ``choices.json``'s entry, else the model's own record of its
    training clips (a folder whose state is gone), else None."""
    saved = out / choices_file
    if saved.is_file() and (out / "train_state.safetensors").exists():
        try:
            entry = json.loads(saved.read_text()).get(DATA_SET_KEY)
        except (OSError, ValueError, AttributeError):
            entry = None
        if isinstance(entry, dict):
            return entry
    model = out / "model.safetensors"
    if not model.is_file():
        return None
    from models.checkpoint import CheckpointLoadError, read_info

    try:
        extra = read_info(model).extra
    except CheckpointLoadError:  # an unreadable model is not told (the run overwrites it, as before)
        return None
    return {"name": extra.get("name"), KEY: extra.get(KEY)}


def other_data_set(out: Path, root: Path, data: OwnData, choices_file: str) -> str | None:
    """The data set ``out``'s saved state or model was trained on when it is not ``data`` (at ``root``):
    its folder, or its name where no folder is recorded; None when it is this data set or cannot be told
    (nothing recorded). It is another data set when none of the clips recorded is among this data's
    (whatever their split): data moved or changed shares clips, and the resume check judges it."""
    entry = _saved_entry(out, choices_file)
    digests = recorded(entry) if entry is not None else None
    if entry is None or not digests:
        return None
    folder = entry.get("folder")
    if folder == str(root.resolve()):
        return None
    mine = {clip_digest(Path(clip.path)) for clip in data.clip_set.clips}  # any split: carving may move
    if digests & mine:  # shares clips: this data moved or changed, the resume check's to judge
        return None
    return folder if isinstance(folder, str) else f"a data set named {entry.get('name')!r}"


def other_data_set_line(out: Path, other: str, root: Path) -> str:
    """The one-line refusal of a run whose output folder holds another data set's training."""
    return (
        f"{display_path(out)} holds training on another data set ({display_path(other)}), not on "
        f"{display_path(root)}: give --out DIR to train this one into a folder of its own (--fresh "
        "overwrites the other's model)"
    )
