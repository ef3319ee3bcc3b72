"""The usable part of a clip set read from class folders: one rule for every command that reads them.

Class folders hold whatever their owner put there. ``streamd train --data`` (``training.own_data``),
``streamd evaluate --folders``, and a TOML experiment whose ``[data]`` reader is ``folders`` (trained by
``streamd train``, scored by ``streamd evaluate --config``) list them one way (``read_folders``: what the
listing skips is said, a broken link is a file to check, not an error) and leave out the same files —
unreadable, or with no signal — by one check, ``training.own_data.usable_files`` (here ``usable_subset``),
with the same warnings; a class whose files are all unusable is dropped from the labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.clips import Clip, ClipSet
from training.readers import DatasetError, read_class_folders_as_found


def read_folders(options: dict[str, Any]) -> tuple[ClipSet, list[str]]:
    """Class folders by the ``folders`` reader's options, as found, and the lines saying what the listing
    left out (files beside the class folders, class folders without audio); ``usable_subset`` next."""
    problems: list[str] = []
    return read_class_folders_as_found(**options, problems=problems), problems


def usable_subset(clip_set: ClipSet) -> tuple[ClipSet, list[str], dict[Path, float]]:
    """``(the usable clips, the lines saying what was left out, each usable file's duration in s)``.

    A class that had files here, none of them usable, is left out of the labels (the targets renumbered,
    the order kept); a class with no file here at all (none in the folds chosen) keeps its place.
    ``DatasetError`` when no file is usable at all."""
    from training.own_data import usable_files

    labelled = [(Path(c.path), clip_set.labels[t]) for c in clip_set.clips for t in c.targets[:1]]
    durations, warnings = usable_files(labelled)
    kept = [clip for clip in clip_set.clips if Path(clip.path) in durations]
    if not kept:
        raise DatasetError(f"{clip_set.name}: none of its {len(clip_set.clips)} file(s) is usable")
    had = {t for clip in clip_set.clips for t in clip.targets}
    used = sorted({t for clip in kept for t in clip.targets} | (set(range(len(clip_set.labels))) - had))
    if len(kept) == len(clip_set.clips) and len(used) == len(clip_set.labels):
        return clip_set, warnings, durations
    rank = {old: new for new, old in enumerate(used)}
    renumbered = [Clip(c.path, tuple(rank[t] for t in c.targets), c.fold) for c in kept]
    labels = [clip_set.labels[i] for i in used]
    subset = ClipSet(renumbered, labels, multi_label=clip_set.multi_label, name=clip_set.name)
    return subset, warnings, durations
