"""Dataset readers: three on-disk layouts -> one ``ClipSet``.

- ``read_esc50``: an ESC-50-style metadata CSV (``filename``, ``fold``, ``target``, ``category``).
- ``read_class_folders``: one sub-folder per class (GTZAN style); folds assigned round-robin per class.
- ``read_json_datafiles``: AST/AuM datafiles ``{"data": [{"wav": ..., "labels": "mid1,mid2"}]}`` plus a
  ``class_labels_indices.csv`` (``index``, ``mid``, ``display_name``); the i-th datafile is fold i + 1.

Readers only list files and check that they exist; decoding happens later (``audio_core.audio_file``).
Every problem raises ``DatasetError`` naming the file (and row) at fault.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.common import label_name
from training import audio_folders as folders
from training.audio_folders import AUDIO_EXTENSIONS
from training.clips import Clip, ClipSet
from training.dataset_files import DatasetError, check_exists, int_field, not_found, read_csv, read_text

ESC50 = "esc50"  # the data set name of ESC-50's own clips, whatever their CSV is called
# ESC-50's file names: {fold}-{freesound clip id}-{take}-{target}.{extension}
ESC50_FILE_NAME = re.compile(r"^(\d+)-\d+-[A-Z]-(\d+)\.[A-Za-z0-9]+$")


def read_esc50(
    csv_path: str | Path,
    audio_dir: str | Path | None = None,
    folds: Sequence[int] | None = None,
    categories: Sequence[str] | None = None,
    exclude_categories: Sequence[str] | None = None,
) -> ClipSet:
    """ESC-50-style CSV; ``audio_dir`` defaults to ``<csv folder>/../audio``; ``folds`` keeps only those.

    ``categories`` keeps only those classes, ``exclude_categories`` drops those (a name not in the CSV is
    an error). Labels are the categories ordered by their ``target`` number (so the full ESC-50 CSV keeps
    its numbering; a CSV or a filter with only some targets gets compact indices in the same order).
    A row with an empty filename, or naming a file an earlier row names, is refused naming its line.
    """
    path = Path(csv_path)
    rows = read_csv(path, ["filename", "fold", "target", "category"])
    if not rows:
        raise DatasetError(f"{path}: no rows")
    rows = _filter_categories(path, rows, categories, exclude_categories)
    audio = Path(audio_dir) if audio_dir is not None else path.absolute().parent.parent / "audio"
    names: dict[int, str] = {}
    entries: list[tuple[Path, int, int]] = []
    first: dict[Path, int] = {}  # the file -> the line that first names it
    for line, row in rows:
        if not row["filename"]:
            raise DatasetError(f"{path}:{line}: empty filename")
        file = audio / row["filename"]
        if (seen := first.setdefault(folders.identity(file), line)) != line:  # it would count twice
            raise DatasetError(
                f"{path}:{line}: {row['filename']} is listed again (first on line {seen}): one row per clip"
            )
        if not row["category"]:
            raise DatasetError(f"{path}:{line}: empty category")
        target = int_field(path, line, row, "target")
        fold = int_field(path, line, row, "fold")
        if names.setdefault(target, row["category"]) != row["category"]:
            raise DatasetError(
                f"{path}:{line}: target {target} is both {names[target]!r} and {row['category']!r}"
            )
        entries.append((file, target, fold))
    rank = {target: i for i, target in enumerate(sorted(names))}
    labels = [names[target] for target in sorted(names)]
    clips = [Clip(file, (rank[target],), fold) for file, target, fold in entries]
    if folds is not None:
        clips = [c for c in clips if c.fold in set(folds)]
    check_exists(clips, path)
    return ClipSet(clips, labels, multi_label=False, name=esc50_set_name(path, entries))


def esc50_set_name(path: Path, entries: Sequence[tuple[Path, int, int]]) -> str:
    """The data set a CSV's ``(file, target, fold)`` rows name: ESC-50 itself (``ESC50``) when every row is
    one of its clips by its file naming (fold and target in the name, as the row says), so that a subset
    (ESC-10, one fold) in a CSV of another name keeps ESC-50's folds; else the CSV's name."""

    def esc50_row(file: Path, target: int, fold: int) -> bool:
        match = ESC50_FILE_NAME.match(file.name)
        return match is not None and (int(match[1]), int(match[2])) == (fold, target)

    if path.stem != ESC50 and entries and all(esc50_row(*entry) for entry in entries):
        return ESC50
    return path.stem


def _filter_categories(
    path: Path,
    rows: list[tuple[int, dict[str, str]]],
    keep: Sequence[str] | None,
    drop: Sequence[str] | None,
) -> list[tuple[int, dict[str, str]]]:
    """The rows whose category is in ``keep`` (when given) and not in ``drop``."""
    known = {row["category"] for _, row in rows}
    for option, names in (("categories", keep), ("exclude_categories", drop)):
        unknown = sorted(set(names or ()) - known)
        if unknown:
            raise DatasetError(f"{path}: {option}: unknown categor(ies) {unknown}")
    out = [
        (line, row)
        for line, row in rows
        if (keep is None or row["category"] in keep) and row["category"] not in (drop or ())
    ]
    if not out:
        raise DatasetError(f"{path}: no rows left after the category filter")
    return out


def read_class_folders(
    root: str | Path, num_folds: int | None = None, extensions: Sequence[str] = AUDIO_EXTENSIONS
) -> ClipSet:
    """One sub-folder per class (sorted names = labels); audio files found recursively inside each, as
    ``training.audio_folders`` lists them (hidden names skipped, linked folders followed); a broken link is
    a ``DatasetError`` naming it, as in the other readers.

    With ``num_folds``, each class's files (sorted) get folds 1, 2, ..., num_folds, 1, ... so that every
    fold holds every class; without it, ``fold`` is None.
    """
    clip_set = read_class_folders_as_found(root, num_folds, extensions)
    check_exists(clip_set.clips, Path(root))
    return clip_set


def read_class_folders_as_found(
    root: str | Path,
    num_folds: int | None = None,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
    problems: list[str] | None = None,
) -> ClipSet:
    """``read_class_folders`` with broken links kept, for a caller that checks every file itself and leaves
    the unusable ones out with a warning (``streamd evaluate --folders``, as ``train --data`` does); what
    the listing leaves out (``audio_folders.class_tree``: files beside the class folders, class folders
    without audio, ...) is said in ``problems`` when given, in ``train --data``'s words."""
    root = Path(root)
    if not root.is_dir():
        raise (
            DatasetError(f"{root}: is a file, not a dataset folder")
            if root.exists()
            else not_found(root, "dataset folder")
        )
    if num_folds is not None and num_folds < 1:
        raise DatasetError(f"{root}: num_folds must be at least 1, got {num_folds}")
    classes, others, notes = folders.class_tree(root, tuple(extensions))  # as train --data lists them
    if repeated := folders.repeated_file(file for _, files in classes for file in files):
        raise DatasetError(folders.repeated_file_note(*repeated))
    # folders whose names differ only in Unicode normalisation (NFC / NFD) are one class (label_name)
    names = [label_name(d.name) for d, _ in classes]
    labels = sorted(set(names))
    index = {name: i for i, name in enumerate(labels)}
    listed: Counter[str] = Counter()  # files of each class so far: its folds go round-robin across folders
    clips: list[Clip] = []
    for name, (_, files) in zip(names, classes, strict=True):
        clips += [
            Clip(file, (index[name],), None if num_folds is None else (listed[name] + i) % num_folds + 1)
            for i, file in enumerate(files)
        ]
        listed[name] += len(files)
    if not clips:
        kinds = ", ".join(sorted(e.lower() for e in extensions))
        raise DatasetError(f"{root}: no class folders with audio files ({kinds})")
    if problems is not None:
        problems += notes + ([folders.other_files_note(others)] if others else [])
    return ClipSet(clips, labels, multi_label=False, name=root.name)


def read_label_indices(path: str | Path) -> tuple[list[str], dict[str, int]]:
    """``class_labels_indices.csv`` -> (display names by index, mid -> index)."""
    path = Path(path)
    rows = read_csv(path, ["index", "mid", "display_name"])
    by_index: dict[int, tuple[str, str]] = {}
    for line, row in rows:
        by_index[int_field(path, line, row, "index")] = (row["mid"], row["display_name"])
    if sorted(by_index) != list(range(len(by_index))) or not by_index:
        raise DatasetError(f"{path}: indices must be 0..N-1 without gaps")
    labels = [by_index[i][1] for i in range(len(by_index))]
    return labels, {by_index[i][0]: i for i in range(len(by_index))}


def _datafile_entries(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise not_found(path, "datafile")
    try:
        data = json.loads(read_text(path, "datafile"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DatasetError(f'{path}: expected an object with a "data" list')
    return data["data"]


def read_json_datafiles(
    datafiles: str | Path | Sequence[str | Path],
    label_csv: str | Path,
    multi_label: bool | None = None,
) -> ClipSet:
    """AST/AuM datafiles; relative ``wav`` paths are taken relative to the datafile's folder.

    The i-th datafile's clips get fold ``i + 1``. ``multi_label`` defaults to True when any clip has
    more than one label.
    """
    paths = [Path(datafiles)] if isinstance(datafiles, (str, Path)) else [Path(p) for p in datafiles]
    if not paths:
        raise DatasetError("no datafiles given")
    labels, mid_index = read_label_indices(label_csv)
    clips: list[Clip] = []
    for fold, path in enumerate(paths, start=1):
        for i, entry in enumerate(_datafile_entries(path)):
            if not isinstance(entry, dict) or "wav" not in entry or "labels" not in entry:
                raise DatasetError(f'{path}: entry {i} needs "wav" and "labels"')
            mids = [m.strip() for m in str(entry["labels"]).split(",") if m.strip()]
            unknown = [m for m in mids if m not in mid_index]
            if not mids or unknown:
                raise DatasetError(
                    f"{path}: entry {i} has unknown label(s) {unknown or mids} (not in {label_csv})"
                )
            wav = Path(str(entry["wav"]))
            clips.append(
                Clip(wav if wav.is_absolute() else path.parent / wav, tuple(mid_index[m] for m in mids), fold)
            )
        check_exists([c for c in clips if c.fold == fold], path)
    if multi_label is None:
        multi_label = any(len(c.targets) > 1 for c in clips)
    elif not multi_label and any(len(c.targets) > 1 for c in clips):
        raise DatasetError(f"{paths[0]}: clips with several labels, but multi_label is false")
    return ClipSet(clips, labels, multi_label=multi_label, name=paths[0].stem)


READERS = {"esc50": read_esc50, "folders": read_class_folders, "json": read_json_datafiles}


def read_dataset(reader: str, **options: Any) -> ClipSet:
    """Dispatch by reader name (``esc50``, ``folders``, ``json``) with that reader's keyword options."""
    if reader not in READERS:
        raise DatasetError(f"unknown dataset reader {reader!r}; known: {', '.join(READERS)}")
    params = inspect.signature(READERS[reader]).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise DatasetError(f"reader {reader!r}: unknown option(s) {unknown}; known: {sorted(params)}")
    missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in options]
    if missing:
        raise DatasetError(f"reader {reader!r}: missing option(s) {missing}")
    return READERS[reader](**options)


def reader_options(reader: str) -> list[str]:
    """The keyword options ``reader`` accepts."""
    if reader not in READERS:
        raise DatasetError(f"unknown dataset reader {reader!r}; known: {', '.join(READERS)}")
    return list(inspect.signature(READERS[reader]).parameters)


_OPTION_KINDS = {
    "csv_path": "path", "audio_dir": "path", "root": "path", "label_csv": "path", "datafiles": "paths",
    "categories": "names", "exclude_categories": "names", "extensions": "names", "num_folds": "count",
    "multi_label": "flag", "holdout_frac": "number",
}  # fmt: skip
_KIND_WORDS = {
    "path": "a path (a non-empty string)", "paths": "a path or a list of paths", "names": "a list of strings",
    "count": "a whole number >= 1", "flag": "true or false", "number": "a number",
}  # fmt: skip


def option_problem(reader: str, key: str, value: Any) -> str | None:
    """Why ``key = value`` is no option of ``reader`` (unknown, or of the wrong type), else None."""
    known = reader_options(reader)
    if key not in known:
        return f"unknown key (known: reader, folds, val_folds, {', '.join(known)})"
    kind = _OPTION_KINDS.get(key)
    strings = isinstance(value, list) and all(isinstance(v, str) and v for v in value)
    path = isinstance(value, str) and value != ""
    whole = isinstance(value, int) and not isinstance(value, bool)
    fits = {
        "path": path, "paths": path or strings, "names": strings, "flag": isinstance(value, bool),
        "count": whole and value >= 1, "number": whole or isinstance(value, float),
    }.get(kind or "", True)  # fmt: skip
    return None if fits else f"must be {_KIND_WORDS[kind or '']}, got {value!r}"


def read_own(root: str | Path, holdout_frac: float = 0.1) -> ClipSet:
    """A user's own data: class folders, train/val/test folders or a path,label[,split] CSV
    (``training.own_data``); splits become folds train 1, val 2, test 3, carved held-out part 4."""
    from training.own_data import read_own_data

    data = read_own_data(root, holdout_frac)
    for problem in data.problems:  # as train --data and evaluate warn
        print(f"streamd: warning: {problem}", file=sys.stderr, flush=True)
    return data.clip_set


READERS["own"] = read_own
