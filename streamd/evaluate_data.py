"""The clips ``streamd evaluate`` scores, and what it says about them.

The data options name a clip set (``--config``'s ``[data]``, ``--esc50``, ``--folders``, ``--datafiles``);
``--folds`` (or the checkpoint's held-out folds, with ``--config``) chooses among its folds; class folders
are listed as ``train --data`` lists them (split folders and CSVs are read by its reader), and the files
it leaves out (unreadable, or with no signal) are left out with its warnings by its own check
(``usable_clips``). Then the checkpoint's own training data: a checkpoint that records the clips it
trained on (every ``streamd train`` now: ``training.trained_clips``), and those its ``--init`` checkpoints
trained on, gets those among the chosen clips counted in a warning, or left out with ``--held-out``; an
older one (or an init), which records only its training folds, gets a warning when any of them is scored
where the fold numbers are the training's (an ESC-50 CSV's, datafiles', a ``--config``'s), and a note
that it cannot be told where they are not (``--folders``: ``--num-folds`` numbers them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from streamd.errors import ConfigError
from streamd.model_loading import LoadedModel
from streamd.trained_clip_check import (
    folds_of_inits,
    leave_out_trained,
    refuse_untold_inits,
    warn_of_trained_clips,
)
from training.clips import ClipSet, dataset_name
from training.trained_clips import recorded, too_many
from training.usable_clips import read_folders

SOURCE_OPTIONS = {"audio_dir": "esc50", "num_folds": "folders", "label_csv": "datafiles"}  # option: source


def _say(kind: str, text: str) -> None:
    print(f"streamd: {kind}: {text}", file=sys.stderr, flush=True)


def chosen_clips(args: argparse.Namespace, loaded: LoadedModel, window_s: float | None) -> ClipSet:
    """The clips to score (``window_s``: the model's window, for the note on longer clips; None: none)."""
    if args.held_out and recorded(loaded.info.extra) is None:  # said before any file is read
        count = too_many(loaded.info.extra)
        why = (
            f"trained on {count} clips, too many to record each, and records none of them"
            if count is not None
            else "records no list of the clips it trained on (an older streamd's, or a shipped model; "
            "streamd train records one now)"
        )
        raise ConfigError(
            f"--held-out: the checkpoint {why}; choose held-out folds with --folds or --config, or read "
            "its training run's report (OUT/eval/)"
        )
    clip_set, from_folders, reader = _dataset(args, loaded)
    extra = loaded.info.extra
    durations: dict[Path, float] = {}
    if from_folders:  # --folders, or --config whose reader is "folders": train's own file check, on every
        clip_set, durations = usable_clips(clip_set)  # file as train checked them (a class's notes true)
    by_fold = folds_of_inits(extra, clip_set, reader)  # inits told apart by fold only
    if args.held_out:
        refuse_untold_inits(extra, clip_set, reader)
        clip_set, left_out = leave_out_trained(extra, clip_set, by_fold)
        _say(  # the count scored: after the unusable files were left out
            "note",
            f"--held-out: {left_out} clip(s) the checkpoint trained on left out; scoring "
            f"{len(clip_set.clips)}",
        )
    else:  # counted among the clips that will be scored (with --streaming: the soundscapes' pool)
        pool = "clips the soundscapes are drawn from" if getattr(args, "streaming", False) else ""
        warn_of_trained_clips(extra, clip_set, by_fold, pool or "clips scored")
    _note_longer(clip_set, durations, window_s)  # of the clips scored, not of those left out
    return clip_set


def _cannot_tell(args: argparse.Namespace, extra: dict[str, Any]) -> None:
    """``--folders`` of the data set an older checkpoint (no list of its clips) names: its fold numbers
    are not ``--num-folds``' (it does not record how its folds were numbered), so which clips it trained
    on cannot be told; an older ``train --data`` checkpoint trained on most of that data."""
    name = extra.get("dataset")
    if "derived" in extra:
        _say(  # it says which data set, not which clips
            "warning",
            f"the checkpoint was trained by streamd train --data on a data set named {name!r} and "
            f"records no list of its clips (an older streamd): if {args.folders} is that data, its "
            "training clips are among these and the figures are not held out (its training run's "
            "report, OUT/eval/, is on the held-out clips)",
        )
        return
    folds = extra.get("train_folds") or []
    by = f" (its fold(s) {folds}, numbered as its config numbered them)" if folds else ""
    _say(
        "note",
        f"the checkpoint was trained on a data set named {name!r}{by} and records no list of its clips "
        f"(an older streamd): whether the clips scored from {args.folders} were trained on cannot be "
        "told (--config with its training config scores its held-out folds)",
    )


def _dataset(args: argparse.Namespace, loaded: LoadedModel) -> tuple[ClipSet, bool, str]:
    """The clip set the data options name, its folds chosen (``--folds``, or for ``--config`` the folds
    the checkpoint was held out on), whether it was listed from class folders (then ``usable_clips``
    checks its files), and the reader that numbered its folds (``training.trained_clips.numbered_as_data``:
    whether a training's fold numbers name the same clips here)."""
    from training.experiment_spec import load_experiment
    from training.readers import read_dataset

    chosen = [name for name in ("config", "esc50", "folders", "datafiles") if getattr(args, name)]
    if len(chosen) != 1:
        raise ConfigError("give exactly one of --config, --esc50, --folders or --datafiles")
    for option, source in SOURCE_OPTIONS.items():  # never silently ignored
        if getattr(args, option) is not None and source not in chosen:
            raise ConfigError(f"--{option.replace('_', '-')}: only with --{source}")
    if args.config:
        exp = load_experiment(args.config, need_model=False)  # its [data]: the model is the checkpoint
        if exp.reader == "folders":  # listed as --folders lists them, its files checked by usable_clips
            clip_set = _listed_folders(read_folders(exp.reader_options))
        else:
            clip_set = read_dataset(exp.reader, **exp.reader_options)
        if exp.folds is not None:
            clip_set = _select_folds(clip_set, exp.folds)
        folds = _config_folds(exp, clip_set, loaded, args.folds)
        return _select_folds(clip_set, folds), exp.reader == "folders", exp.reader
    clip_set, listed, reader = _other_dataset(args, read_dataset)
    extra = loaded.info.extra
    # a checkpoint that records no data set predates own-data training: it was trained on ESC-50
    trained_on = extra.get("dataset") or ("esc50" if args.esc50 else None)
    name = dataset_name(Path(args.folders)) if args.folders else clip_set.name
    if recorded(extra) is None and trained_on == name:  # else its clips are checked (or other data)
        if not args.folders:  # an ESC-50 CSV's folds, a datafile's: the data's own numbering
            _warn_if_trained_on(loaded, clip_set, args.folds, clip_set.name)
        elif too_many(extra) is None:  # fold numbers of --num-folds, not necessarily the training's
            _cannot_tell(args, extra)  # (too many clips recorded none: noted with the clips scored)
    return _select_folds(clip_set, args.folds), listed, reader


def _config_folds(exp, clip_set, loaded: LoadedModel, chosen: list[int] | None) -> list[int] | None:
    """The folds to score with ``--config``: ``chosen`` (``--folds``), else the ones the checkpoint records
    as held out, else the config's ``val_folds`` (mode "single"), else all; a warning when the checkpoint
    trained on any of them (it records its training folds)."""
    extra = loaded.info.extra
    if extra.get("dataset", clip_set.name) != clip_set.name:  # trained on other data: its folds are not these
        return chosen or (exp.val_folds if exp.mode == "single" else None)
    recorded_folds = list(extra.get("val_folds") or [])
    folds = chosen or recorded_folds or (exp.val_folds if exp.mode == "single" else None)
    if not _warn_if_trained_on(loaded, clip_set, folds, exp.source) and folds and not chosen:
        whose = "the checkpoint's held-out" if recorded_folds else "the config's val_folds:"
        _say("note", f"scoring {whose} fold(s) {folds} (--folds chooses others)")
    return folds


def _warn_if_trained_on(loaded: LoadedModel, clip_set, folds: list[int] | None, source: str) -> bool:
    """Warn (and True) when the checkpoint records training on any of ``folds`` (None: all) of this data,
    numbered as the training numbered it; a checkpoint that records its clips is checked clip by clip
    instead (``_warn_of_trained_clips``)."""
    if recorded(loaded.info.extra) is not None:
        return False
    trained = sorted(set(loaded.info.extra.get("train_folds") or []) & set(folds or clip_set.folds()))
    if trained:
        _say(
            "warning",
            f"the checkpoint trained on fold(s) {trained} of {source}: these figures are not held out",
        )
    return bool(trained)


def _other_dataset(args: argparse.Namespace, read_dataset) -> tuple[ClipSet, bool, str]:
    """The clip set of ``--esc50``, ``--folders`` or ``--datafiles``, whether it was listed from class
    folders whose files are still to be checked (``usable_clips``), and the reader that numbered its folds."""
    if args.esc50:
        return read_dataset("esc50", csv_path=args.esc50, audio_dir=args.audio_dir), False, "esc50"
    if args.folders:
        layout = _own_layout(Path(args.folders))
        if layout and (args.num_folds is not None or args.folds) and layout[0] == "split folders":
            raise ConfigError(
                f"--{'num-folds' if args.num_folds is not None else 'folds'}: {args.folders} holds split "
                "folders (train/ val/ test/), scored by split: --held-out scores what training held out, "
                "or point --folders at one split"
            )
        if layout and layout[1] is not None:  # split folders, listed as train lists them; files checked below
            return layout[1], True, "own"
        if layout:  # a CSV of path,label[,split] (or a folder of one), read as train --data reads it
            return read_dataset("own", root=args.folders), False, "own"  # (unusable files left out)
        # class folders: every file is checked below, the unusable ones left out with a warning
        return (
            _listed_folders(read_folders({"root": args.folders, "num_folds": args.num_folds})),
            True,
            "folders",
        )
    if not args.label_csv:
        raise ConfigError("--datafiles needs --label-csv")
    return read_dataset("json", datafiles=args.datafiles, label_csv=args.label_csv), False, "json"


def _own_layout(root: Path) -> tuple[str, ClipSet | None] | None:
    """``root`` laid out as ``train --data`` reads it other than as class folders: ("csv", None) for a CSV
    of clips or a folder holding one, ("split folders", the listing) for train/ (val/ test/) folders of
    class folders (each split a fold, ``SPLIT_FOLDS``; what the listing skipped said); else None."""
    from training.clips import Clip
    from training.own_data import SPLIT_FOLDS, detect_layout
    from training.readers import DatasetError

    if root.is_file():
        return "csv", None
    try:
        names = {p.name.lower() for p in root.iterdir()} if root.is_dir() else set()
    except OSError:  # unreadable: the class-folder listing says so
        return None
    if not names & {"train", "val", "test"} and not any(n.endswith(".csv") for n in names):
        return None  # class folders (the cheap test: no split folder, no CSV)
    try:
        layout, entries, problems = detect_layout(root)
    except DatasetError:  # not a layout train reads: listed as class folders, and said there
        return None
    if layout == "csv":
        return "csv", None
    if layout != "split folders":
        return None
    labels = sorted({label for _, label, _ in entries})
    clips = [Clip(f, (labels.index(label),), SPLIT_FOLDS[split]) for f, label, split in entries]
    listed = _listed_folders((ClipSet(clips, labels, multi_label=False, name=dataset_name(root)), problems))
    return layout, listed


def _select_folds(clip_set: ClipSet, folds: list[int] | None) -> ClipSet:
    if folds is None:
        return clip_set
    if not clip_set.folds():
        raise ConfigError("--folds: these class folders have no folds (give --num-folds to make some)")
    missing = sorted(set(folds) - set(clip_set.folds()))
    if missing:
        raise ConfigError(f"folds {missing} have no clips (the dataset has folds {clip_set.folds()})")
    return clip_set.subset(folds=folds)


def _listed_folders(listed: tuple[ClipSet, list[str]]) -> ClipSet:
    """Class folders as ``read_folders`` lists them, saying what the listing left out."""
    clip_set, problems = listed
    for problem in problems:  # the lines train prints for the same folders
        _say("warning", problem)
    return clip_set


def usable_clips(clip_set: ClipSet) -> tuple[ClipSet, dict[Path, float]]:
    """Class folders hold whatever their owner put there: the files ``streamd train`` leaves out
    (unreadable, or no signal) are left out, with its warnings, by its own rule
    (``training.usable_clips.usable_subset``), and so is a class with no usable file left (training
    dropped it: the model does not know it). Returns the usable clips and each one's duration in s."""
    from training.usable_clips import usable_subset

    kept, warnings, durations = usable_subset(clip_set)
    for warning in warnings:  # the lines train prints for the same files
        _say("warning", warning)
    return kept, durations


def _note_longer(clip_set: ClipSet, durations: dict[Path, float], window_s: float | None) -> None:
    """Clips to be scored that are longer than the model's window (``window_s``; None: no note) are counted
    in a note: each is scored by the mean of its windows, as ``streamd classify`` and training's reports
    score them."""
    if not window_s:
        return
    longer = sum(1 for c in clip_set.clips if durations.get(Path(c.path), 0.0) > window_s + 0.01)
    if longer:
        _say(
            "note",
            f"{longer} clip(s) are longer than the model's {window_s:g}-s window: each is scored by the "
            "mean of its windows, as streamd classify scores a file",
        )
