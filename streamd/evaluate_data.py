"""The clips ``streamd evaluate`` scores, and what it says about them.

The data options name a clip set (``--config``'s ``[data]``, ``--esc50``, ``--folders``, ``--datafiles``);
``--folds`` (or the checkpoint's held-out folds, with ``--config``) chooses among its folds; class folders
are listed as ``train --data`` lists them and their unusable files left out with its warnings. Then the
checkpoint's own training data: a checkpoint that records the clips it trained on (``streamd train
--data``: ``training.trained_clips``) gets those among the chosen clips counted in a warning, or left out
with ``--held-out``; one that records its training folds gets a warning when any of them is scored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamd.errors import ConfigError
from streamd.model_loading import LoadedModel
from training.clips import Clip, ClipSet
from training.trained_clips import recorded, seen

SOURCE_OPTIONS = {"audio_dir": "esc50", "num_folds": "folders", "label_csv": "datafiles"}  # option: source


def _say(kind: str, text: str) -> None:
    print(f"streamd: {kind}: {text}", file=sys.stderr, flush=True)


def chosen_clips(args: argparse.Namespace, loaded: LoadedModel, window_s: float | None) -> ClipSet:
    """The clips to score (``window_s``: the model's window, for the note on longer clips; None: none)."""
    if args.held_out and recorded(loaded.info.extra) is None:  # said before any file is read
        raise ConfigError(
            "--held-out: the checkpoint records no list of the clips it trained on (streamd train --data "
            "records one); choose held-out folds with --folds or --config, or read its training run's "
            "report (OUT/eval/)"
        )
    clip_set = _dataset(args, loaded)
    if args.held_out:  # before the file check: the training clips need not be decoded
        clip_set = _trained_clips(args, loaded, clip_set)
    if args.folders:
        clip_set = usable_clips(clip_set, window_s)
    if not args.held_out:  # counted among the clips that will be scored
        _trained_clips(args, loaded, clip_set)
    return clip_set


def _trained_clips(args: argparse.Namespace, loaded: LoadedModel, clip_set: ClipSet) -> ClipSet:
    """Warn of the chosen clips the checkpoint trained on, or (``--held-out``) leave them out."""
    extra = loaded.info.extra
    digests = recorded(extra)
    if digests is None:  # (--held-out was refused before)
        name = extra.get("dataset")
        if args.folders and "derived" in extra and name == Path(args.folders).resolve().name:
            _say(  # an older streamd train --data checkpoint: it says which data set, not which clips
                "warning",
                f"the checkpoint was trained by streamd train --data on a data set named {name!r} and "
                f"records no list of its clips (an older streamd): if {args.folders} is that data, its "
                "training clips are among these and the figures are not held out (its training run's "
                "report, OUT/eval/, is on the held-out clips)",
            )
        return clip_set
    trained = seen((Path(c.path) for c in clip_set.clips), digests)
    total, kept = len(clip_set.clips), [c for c in clip_set.clips if Path(c.path) not in trained]
    if not args.held_out:
        if trained:
            _say(
                "warning",
                f"{len(trained)} of the {total} clips scored are clips the checkpoint trained on: these "
                f"figures are not held out (--held-out scores only the {len(kept)} it did not train on)",
            )
        return clip_set
    if not kept:
        raise ConfigError(f"--held-out: all {total} clips given are clips the checkpoint trained on")
    _say(
        "note", f"--held-out: {len(trained)} clip(s) the checkpoint trained on left out; scoring {len(kept)}"
    )
    return ClipSet(kept, clip_set.labels, multi_label=clip_set.multi_label, name=clip_set.name)


def _dataset(args: argparse.Namespace, loaded: LoadedModel) -> ClipSet:
    """The clip set the data options name, its folds chosen (``--folds``, or for ``--config`` the folds
    the checkpoint was held out on)."""
    from training.experiment_spec import load_experiment
    from training.readers import read_dataset

    chosen = [name for name in ("config", "esc50", "folders", "datafiles") if getattr(args, name)]
    if len(chosen) != 1:
        raise ConfigError("give exactly one of --config, --esc50, --folders or --datafiles")
    for option, source in SOURCE_OPTIONS.items():  # never silently ignored
        if getattr(args, option) is not None and source not in chosen:
            raise ConfigError(f"--{option.replace('_', '-')}: only with --{source}")
    if args.config:
        exp = load_experiment(args.config)
        clip_set = read_dataset(exp.reader, **exp.reader_options)
        if exp.folds is not None:
            clip_set = _select_folds(clip_set, exp.folds)
        return _select_folds(clip_set, _config_folds(exp, clip_set, loaded, args.folds))
    clip_set = _other_dataset(args, read_dataset)
    extra = loaded.info.extra
    # a checkpoint that records no data set predates own-data training: it was trained on ESC-50; one of
    # train --data has folds that are its splits, not --num-folds' folds (its clips are checked instead)
    by_folds = not (args.folders and "derived" in extra)
    if by_folds and (extra.get("dataset") or ("esc50" if args.esc50 else None)) == clip_set.name:
        _warn_if_trained_on(loaded, clip_set, args.folds, clip_set.name)
    return _select_folds(clip_set, args.folds)


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
    """Warn (and True) when the checkpoint records training on any of ``folds`` (None: all) of this data;
    a checkpoint that records its clips is checked clip by clip instead (``_trained_clips``)."""
    if recorded(loaded.info.extra) is not None:
        return False
    trained = sorted(set(loaded.info.extra.get("train_folds") or []) & set(folds or clip_set.folds()))
    if trained:
        _say(
            "warning",
            f"the checkpoint trained on fold(s) {trained} of {source}: these figures are not held out",
        )
    return bool(trained)


def _other_dataset(args: argparse.Namespace, read_dataset) -> ClipSet:
    """The clip set of ``--esc50``, ``--folders`` or ``--datafiles``."""
    if args.esc50:
        return read_dataset("esc50", csv_path=args.esc50, audio_dir=args.audio_dir)
    if args.folders:  # every file is checked below, the unusable ones left out with a warning
        from training.readers import read_class_folders_as_found

        problems: list[str] = []
        clip_set = read_class_folders_as_found(args.folders, num_folds=args.num_folds, problems=problems)
        for problem in problems:  # the lines train --data prints for the same folders
            _say("warning", problem)
        return clip_set
    if not args.label_csv:
        raise ConfigError("--datafiles needs --label-csv")
    return read_dataset("json", datafiles=args.datafiles, label_csv=args.label_csv)


def _select_folds(clip_set: ClipSet, folds: list[int] | None) -> ClipSet:
    if folds is None:
        return clip_set
    if not clip_set.folds():
        raise ConfigError("--folds: these class folders have no folds (give --num-folds to make some)")
    missing = sorted(set(folds) - set(clip_set.folds()))
    if missing:
        raise ConfigError(f"folds {missing} have no clips (the dataset has folds {clip_set.folds()})")
    return clip_set.subset(folds=folds)


def usable_clips(clip_set: ClipSet, window_s: float | None = None) -> ClipSet:
    """Class folders hold whatever their owner put there: files that cannot be decoded are left out with a
    warning, as ``streamd train --data`` leaves them out (``training.own_data.check_files``); with
    ``window_s``, clips longer than the model's window are counted in a note (scored by the mean of their
    windows, as ``streamd classify`` and training's reports score them)."""
    from training.audio_folders import unusable_class_note
    from training.own_data import check_files, left_out_note

    durations, broken = check_files(Path(clip.path) for clip in clip_set.clips)
    longer = sum(1 for d in durations.values() if window_s and d > window_s + 0.01)
    if longer:
        _say(
            "note",
            f"{longer} clip(s) are longer than the model's {window_s:g}-s window: each is scored by the "
            "mean of its windows, as streamd classify scores a file",
        )
    if broken:
        _say("warning", left_out_note(broken))
    kept = [clip for clip in clip_set.clips if Path(clip.path) in durations]
    if not kept:
        raise ConfigError(f"{clip_set.name}: none of its {len(clip_set.clips)} file(s) is usable")
    used = sorted({t for clip in kept for t in clip.targets})
    if not broken and len(used) == len(clip_set.labels):
        return clip_set
    for index, label in enumerate(clip_set.labels):  # a class left with no clip is left out, as in training
        files = sum(1 for clip in clip_set.clips if index in clip.targets)
        if index not in used and files:  # none in the chosen folds: nothing to say
            _say("warning", unusable_class_note(label, files))
    rank = {old: new for new, old in enumerate(used)}
    kept = [Clip(c.path, tuple(rank[t] for t in c.targets), c.fold) for c in kept]
    labels = [clip_set.labels[i] for i in used]
    return ClipSet(kept, labels, multi_label=clip_set.multi_label, name=clip_set.name)
