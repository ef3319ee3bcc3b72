"""Which clips a checkpoint trained on, so that ``streamd evaluate`` can tell held-out figures from others.

Every training run (``streamd train --data`` and a TOML experiment, whatever its reader: all read files)
stores, in the checkpoint's ``extra``, a short digest of every training clip's bytes (``record``; about
22 bytes of header per clip: 26.5 KB for 1200 ESC-50 clips, 35.3 KB for 1600). ``evaluate`` digests the
clips it is given and finds those among them (``seen``): whatever their paths (a moved folder, a link, a
copy) or fold numbers, a training clip is recognised, and a clip is held out exactly when it was not
trained on. A clip re-encoded since (other bytes) is not recognised. Each file is digested once per
process (``clip_digest``, keyed by path, size and modification time as the feature cache is): the folds
of a cross-validation share their clips. Above ``MAX_DIGESTS`` training clips none is recorded (the
header, read at every load, would grow by megabytes), only their count (``too_many``). Checkpoints that
record no list (older ones, those of more clips) give None; the shipped models record theirs
(``scripts/record_trained_clips.py``).

A run started from another checkpoint (``--init``) has seen what that one trained on too: it records the
init's data set, training folds and clip digests, and those of the init's own inits (``INIT_KEY``,
``inherited``), so that training warns when its held-out clips are among them (``init_overlap``) and
``evaluate`` counts or leaves them out as the run's own (``recorded_with_inits``, ``init_folds``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from training.cache import file_identity

KEY = "trained_clips"  # in a checkpoint's ``extra``
# in a ``train --data`` checkpoint's ``extra``: the clips of its data it neither trained on nor held out (a
# val split beside the test split its report is on), which ``evaluate --held-out`` leaves out too
SET_ASIDE_KEY = "set_aside_clips"
INIT_KEY = "init_trained"  # in a checkpoint's ``extra``: what its init checkpoints trained on, nearest first
SCHEME = "blake2b-64 of the file's bytes"
LEFT_OUT_BY = "streamd evaluate --held-out leaves them out"  # where a clean held-out figure comes from
DIGEST_BYTES = 8
MAX_DIGESTS = 200_000  # clips: about 4.4 MB of header; more are counted, not recorded
# file_identity -> digest: each file read once per process
_DIGESTS: dict[tuple[str, int, int, int, int], str] = {}


def clip_digest(path: Path) -> str | None:
    """The digest of one file's bytes (hex), or None when it cannot be read (the file check says why);
    computed once per file as it is now (``training.cache.file_identity``)."""
    try:
        key = file_identity(Path(path))
    except OSError:
        return None
    if key in _DIGESTS:
        return _DIGESTS[key]
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    try:
        with Path(path).open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError:
        return None
    _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def record(paths: Iterable[Path]) -> dict[str, Any]:
    """What a checkpoint stores about the clips it trained on (``extra[KEY]``): their digests, or above
    ``MAX_DIGESTS`` clips their count alone (none is read)."""
    files = list(dict.fromkeys(Path(p) for p in paths))
    if len(files) > MAX_DIGESTS:
        return {"scheme": SCHEME, "count": len(files), "digests": None, "note": unrecorded_note(len(files))}
    digests = sorted({d for d in map(clip_digest, files) if d is not None})
    return {"scheme": SCHEME, "count": len(digests), "digests": digests}


def unrecorded_note(count: int) -> str:
    """The one line a training run of more than ``MAX_DIGESTS`` clips prints (and records)."""
    return (
        f"{count} training clips, more than {MAX_DIGESTS}: their digests are not recorded, so streamd "
        "evaluate cannot tell which clips this model trained on (--held-out is refused)"
    )


def recorded(extra: dict[str, Any], key: str = KEY) -> set[str] | None:
    """The digests a checkpoint's ``extra`` records (under ``key``: the clips trained on, or those set
    aside, ``SET_ASIDE_KEY``), or None when it records none (or in another scheme)."""
    entry = extra.get(key)
    if not isinstance(entry, dict) or entry.get("scheme") != SCHEME:
        return None
    digests = entry.get("digests")
    return {d for d in digests if isinstance(d, str)} if isinstance(digests, list) else None


def too_many(extra: dict[str, Any]) -> int | None:
    """The number of clips a checkpoint trained on when there were too many to record (``record``), else
    None."""
    entry = extra.get(KEY)
    if not isinstance(entry, dict) or entry.get("scheme") != SCHEME or entry.get("digests") is not None:
        return None
    count = entry.get("count")
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def seen(paths: Iterable[Path], digests: set[str]) -> set[Path]:
    """The paths whose bytes are those of a recorded training clip."""
    return {path for path in paths if clip_digest(path) in digests}


def copies_note(trained: Iterable[Path], held_out: list[Path]) -> str | None:
    """Held-out clips whose bytes are a training clip's (a file copied into two folds, or into train/ and
    test/): one line counting them and naming the first, as ``evaluate`` counts them; None when none."""
    digests = {d for d in map(clip_digest, trained) if d is not None}
    copied = seen(held_out, digests)
    copies = [path for path in held_out if path in copied]  # in the data's order, for the example named
    if not copies:
        return None
    return (
        f"{len(copies)} of the {len(held_out)} held-out clip(s) are copies of training clips (e.g. "
        f"{copies[0]}): the report scores them as held out ({LEFT_OUT_BY})"
    )


def folds_of(value: Any) -> list[int]:
    """Fold numbers as a checkpoint records them (a list of whole numbers), [] for anything else."""
    if not isinstance(value, list):
        return []
    return [f for f in value if isinstance(f, int) and not isinstance(f, bool)]


def numbered_as_data(reader: str) -> bool:
    """Whether a reader's fold numbers are the data's own (an ESC-50 CSV's, datafiles'), so that a
    training's fold numbers name the same clips wherever that data is read again."""
    return reader in ("esc50", "json")


def inherited(init_extra: dict[str, Any], source: str, known: set[str]) -> list[dict[str, Any]]:
    """``extra[INIT_KEY]`` of a run started from a checkpoint (named ``source``) whose ``extra`` is
    ``init_extra``: its data set, training folds and clip record, then its own inits', each checked; a
    digest kept by an entry before is not stored again, and past ``MAX_DIGESTS`` in all (with ``known``,
    the run's own record) only the count is (the header stays bounded). A digest the run records too is
    kept in its init's entry: what the init trained on is counted whole (a held-out clip that is a copy of
    a training clip and also the init's is the init's too)."""
    first = {
        "source": source,
        "dataset": init_extra.get("dataset") or init_extra.get("name"),
        "train_folds": init_extra.get("train_folds"),
        KEY: init_extra.get(KEY),
    }
    kept: set[str] = set()
    out = []
    for raw in [first, *init_entries(init_extra)]:
        dataset = raw.get("dataset")
        entry: dict[str, Any] = {
            "source": str(raw.get("source")),
            "dataset": dataset if isinstance(dataset, str) else None,
            "train_folds": folds_of(raw.get("train_folds")),
        }
        digests, count = recorded(raw), too_many(raw)
        if digests is not None:
            new = digests - kept
            kept |= digests
            within = len(kept | known) <= MAX_DIGESTS
            entry[KEY] = {"scheme": SCHEME, "count": len(digests), "digests": sorted(new) if within else None}
        elif count is not None:
            entry[KEY] = {"scheme": SCHEME, "count": count, "digests": None}
        out.append(entry)
    return out


def init_entries(extra: dict[str, Any]) -> list[dict[str, Any]]:
    """What a checkpoint records of its init checkpoints (``inherited``), nearest first; [] for none."""
    entries = extra.get(INIT_KEY)
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def recorded_with_inits(extra: dict[str, Any]) -> set[str] | None:
    """The digests of the clips a checkpoint and its inits trained on, as far as they record them; None
    when neither records any."""
    records = [recorded(extra), *(recorded(entry) for entry in init_entries(extra))]
    known = [r for r in records if r is not None]
    return set().union(*known) if known else None


def init_folds(extra: dict[str, Any], dataset: str, esc50: bool) -> list[tuple[str, list[int]]]:
    """``(init source, training folds)`` of the inits that record no clip list but trained on a data set
    named ``dataset`` (numbered as that data numbers its folds; one that records no data set was trained
    on ESC-50, as ``esc50`` says this data is): their clips can be told only by fold."""
    out = []
    for entry in init_entries(extra):
        name = entry.get("dataset") or ("esc50" if esc50 else None)
        folds = folds_of(entry.get("train_folds"))
        if recorded(entry) is None and too_many(entry) is None and name == dataset and folds:
            out.append((str(entry.get("source")), folds))
    return out


def init_overlap(
    extra: dict[str, Any], held_out: list[Path], dataset: str | None, folds: list[int], esc50: bool
) -> str | None:
    """Why the ``held_out`` clips (folds ``folds`` of a data set named ``dataset``; None where the folds are
    not numbered as the data numbers them, so only digests tell) are not held out from a run whose
    ``extra`` records its inits (``INIT_KEY``): one line, or None when no init trained on any (by digest,
    or by fold where an init records no clip list)."""
    digests = set().union(*(recorded(entry) or set() for entry in init_entries(extra)))
    if digests and (trained := seen(held_out, digests)):
        return f"the init checkpoint trained on {len(trained)} of the {len(held_out)} held-out clips"
    for source, trained_folds in init_folds(extra, dataset, esc50) if dataset else []:
        if both := sorted(set(trained_folds) & set(folds)):
            return f"the init checkpoint ({source}) trained on fold(s) {both} of {dataset}, held out here"
    return None


def not_held_out_lines(
    extra: dict[str, Any], trained: list[Path], held_out: list[Path], dataset: str | None, folds: list[int],
    esc50: bool,
) -> list[str]:  # fmt: skip
    """Why a run's ``held_out`` clips are not all held out, one line each: some are copies of its
    ``trained`` clips (``copies_note``); its init checkpoints trained on some (``init_overlap``)."""
    copies = copies_note(trained, held_out) if len(trained) <= MAX_DIGESTS else None  # as ``record``: unread
    init = init_overlap(extra, held_out, dataset, folds, esc50) if INIT_KEY in extra else None
    init_line = init and f"{init}: its held-out figures are not held out ({LEFT_OUT_BY})"
    return [line for line in (copies, init_line) if line]
