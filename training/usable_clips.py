"""The usable part of a clip set read from class folders: one rule for every command that reads them.

Class folders hold whatever their owner put there. ``streamd train --data``, ``streamd evaluate --folders``
and a TOML experiment whose ``[data]`` reader is ``folders`` (trained by ``streamd train``, scored by
``streamd evaluate --config``) all leave out the same files — unreadable, or with no signal — by
``training.own_data.usable_files``, and a class with no usable file left is dropped from the labels.
"""

from __future__ import annotations

from pathlib import Path

from training.clips import Clip, ClipSet
from training.readers import DatasetError


def usable_subset(clip_set: ClipSet) -> tuple[ClipSet, list[str], dict[Path, float]]:
    """``(the usable clips, the lines saying what was left out, each usable file's duration in s)``.

    Labels keep their order; a class none of whose files is usable is left out of them (and the targets
    renumbered). ``DatasetError`` when no file is usable at all."""
    from training.own_data import usable_files

    labelled = [(Path(c.path), clip_set.labels[t]) for c in clip_set.clips for t in c.targets[:1]]
    durations, warnings = usable_files(labelled)
    kept = [clip for clip in clip_set.clips if Path(clip.path) in durations]
    if not kept:
        raise DatasetError(f"{clip_set.name}: none of its {len(clip_set.clips)} file(s) is usable")
    used = sorted({t for clip in kept for t in clip.targets})
    if len(kept) == len(clip_set.clips) and len(used) == len(clip_set.labels):
        return clip_set, warnings, durations
    rank = {old: new for new, old in enumerate(used)}
    renumbered = [Clip(c.path, tuple(rank[t] for t in c.targets), c.fold) for c in kept]
    labels = [clip_set.labels[i] for i in used]
    subset = ClipSet(renumbered, labels, multi_label=clip_set.multi_label, name=clip_set.name)
    return subset, warnings, durations
