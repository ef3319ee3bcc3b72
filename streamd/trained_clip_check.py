"""Which of the clips ``streamd evaluate`` scores a checkpoint has seen: those it trained on and those its
``--init`` checkpoints trained on (``training.trained_clips``), by clip digest, and by fold for an init
that records no clip list but trained on this data, numbered as this data numbers its folds (the shipped
models: ESC-50 folds 1-4). Counted in one warning, or left out with ``--held-out``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from streamd.errors import ConfigError
from training.clips import ClipSet
from training.trained_clips import (
    SET_ASIDE_KEY,
    init_folds,
    numbered_as_data,
    recorded,
    recorded_with_inits,
    seen,
    too_many,
)

InitFolds = list[tuple[str, list[int]]]  # (init source, its training folds)


def _say(kind: str, text: str) -> None:
    print(f"streamd: {kind}: {text}", file=sys.stderr, flush=True)


def folds_of_inits(extra: dict[str, Any], clip_set: ClipSet, reader: str) -> InitFolds:
    """The inits told apart only by fold: where ``reader``'s folds are the data's own (an ESC-50 CSV's, a
    datafiles'), those that trained on a data set of this name without recording their clips."""
    return init_folds(extra, clip_set.name, reader == "esc50") if numbered_as_data(reader) else []


def seen_clips(extra: dict[str, Any], clip_set: ClipSet, by_fold: InitFolds) -> tuple[set[Path], bool]:
    """The clips of ``clip_set`` the checkpoint or its inits trained on, and whether an init's add any."""
    paths = [Path(c.path) for c in clip_set.clips]
    own = seen(paths, recorded(extra) or set())
    folds = {fold for _, init_trained in by_fold for fold in init_trained}
    trained = seen(paths, recorded_with_inits(extra) or set()) | {
        Path(c.path) for c in clip_set.clips if c.fold in folds
    }
    return trained, bool(trained - own)


def refuse_untold_inits(extra: dict[str, Any], clip_set: ClipSet, reader: str) -> None:
    """``--held-out`` of a checkpoint whose init trained on a data set of this name without recording its
    clips, where this data's folds are not numbered as that training numbered them: cannot be told."""
    if numbered_as_data(reader):
        return
    if untold := init_folds(extra, clip_set.name, esc50=False):
        source, folds = untold[0]
        raise ConfigError(
            f"--held-out: the checkpoint's init ({source}) trained on fold(s) {folds} of a data set named "
            f"{clip_set.name!r} and records no list of its clips: which of these it trained on cannot be told"
        )


def warn_of_trained_clips(
    extra: dict[str, Any], clip_set: ClipSet, by_fold: InitFolds, noun: str = "clips scored"
) -> None:
    """Warn of the clips to score that the checkpoint, or its inits, trained on (one line, all counted;
    ``noun``: what the clips are, "clips scored" or the pool soundscapes are drawn from)."""
    if (count := too_many(extra)) is not None:
        _say(
            "note",
            f"the checkpoint trained on {count} clips, too many to record each: whether the clips "
            "scored were trained on cannot be told clip by clip",
        )
    if recorded_with_inits(extra) is None and not by_fold:  # (said by fold, or not told, elsewhere)
        return
    trained, by_init = seen_clips(extra, clip_set, by_fold)
    who = "the checkpoint or its --init checkpoint" if by_init else "the checkpoint"
    aside = set_aside_clips(extra, clip_set) - trained
    total, others = len(clip_set.clips), len(clip_set.clips) - len(trained)
    if trained and not others:
        _say("warning", f"all {total} {noun} are clips {who} trained on: not held out")
    elif trained:
        held = others - len(aside)
        scored = (
            f"scores only the {held} it held out"
            if aside
            else f"scores only the {others} it did not train on"
        )
        if aside and not held:
            scored = "has none left to score: the others were set aside by its training run"
        _say(
            "warning",
            f"{len(trained)} of the {total} {noun} are clips {who} trained on: these figures are "
            f"not held out (--held-out {scored})",
        )


def set_aside_clips(extra: dict[str, Any], clip_set: ClipSet) -> set[Path]:
    """The clips of ``clip_set`` the training run set aside (``training.trained_clips.SET_ASIDE_KEY``: a
    val split beside the test split its report is on), by digest."""
    return seen([Path(c.path) for c in clip_set.clips], recorded(extra, SET_ASIDE_KEY) or set())


def leave_out_trained(extra: dict[str, Any], clip_set: ClipSet, by_fold: InitFolds) -> tuple[ClipSet, int]:
    """``--held-out``: the clips neither the checkpoint nor its inits trained on, less those its training
    run set aside (said in a note: its report is on the split it held out), and how many trained-on clips
    were left out."""
    trained, by_init = seen_clips(extra, clip_set, by_fold)
    aside = set_aside_clips(extra, clip_set) - trained
    kept = [c for c in clip_set.clips if Path(c.path) not in trained | aside]
    if not kept:
        who = "the checkpoint or its --init checkpoint" if by_init else "the checkpoint"
        also = " or set aside" if aside else ""
        raise ConfigError(
            f"--held-out: all {len(clip_set.clips)} clips given are clips {who} trained on{also}"
        )
    if aside:
        _say(
            "note",
            f"--held-out: {len(aside)} clip(s) its training run set aside (a val split beside the test "
            "split its report is on: neither trained on nor held out) left out, as its report left them out",
        )
    left = ClipSet(kept, clip_set.labels, multi_label=clip_set.multi_label, name=clip_set.name)
    return left, len(clip_set.clips) - len(kept) - len(aside)
