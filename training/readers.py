"""Dataset readers: three on-disk layouts -> one ``ClipSet``.

- ``read_esc50``: an ESC-50-style metadata CSV (``filename``, ``fold``, ``target``, ``category``).
- ``read_class_folders``: one sub-folder per class (GTZAN style); folds assigned round-robin per class.
- ``read_json_datafiles``: AST/AuM datafiles ``{"data": [{"wav": ..., "labels": "mid1,mid2"}]}`` plus a
  ``class_labels_indices.csv`` (``index``, ``mid``, ``display_name``); the i-th datafile is fold i + 1.

Readers only list files and check that they exist; decoding happens later (``audio_core.audio_file``).
Every problem raises ``DatasetError`` naming the file (and row) at fault.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training import audio_folders as folders
from training.audio_folders import AUDIO_EXTENSIONS, class_dirs, empty_class_note
from training.clips import Clip, ClipSet


class DatasetError(ValueError):
    """A dataset description is unusable; the message names the file and the problem."""


def not_found(path: Path, what: str) -> DatasetError:
    """``path: no such <what>``; for a relative path, from which directory it was looked up (configs name
    their data relative to the current directory, not to the config file)."""
    if path.is_dir():
        return DatasetError(f"{path}: is a directory, not a {what}")
    where = (
        "" if path.is_absolute() else f" (relative paths are taken from the current directory, {Path.cwd()})"
    )
    return DatasetError(f"{path}: no such {what}{where}")


def read_text(path: Path, what: str) -> str:
    """A UTF-8 text file (a leading byte-order mark, as spreadsheet programs write one, is dropped);
    ``DatasetError`` naming the file when it is not UTF-8 text."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not a UTF-8 text {what} (byte {exc.start} cannot be read)") from None


def csv_lines(path: Path, what: str) -> list[tuple[int, list[str]]]:
    """The rows of a CSV file (``read_text``'s rules), each with the (1-based) line it ends on."""
    reader = csv.reader(io.StringIO(read_text(path, what), newline=""))
    return [(reader.line_num, row) for row in reader]


def _read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise not_found(path, "metadata file")
    with io.StringIO(read_text(path, "metadata file"), newline="") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in columns]
        if missing:
            raise DatasetError(
                f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(columns)})"
            )
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]


def _int_field(path: Path, line: int, row: dict[str, str], name: str) -> int:
    try:
        return int(row[name])
    except ValueError:
        raise DatasetError(f"{path}:{line}: column {name!r} is not an integer ({row[name]!r})") from None


def _check_exists(clips: list[Clip], source: Path) -> None:
    missing = [c.path for c in clips if not Path(c.path).is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DatasetError(f"{source}: audio file {missing[0]} does not exist{more}")


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
    """
    path = Path(csv_path)
    rows = _read_csv(path, ["filename", "fold", "target", "category"])
    if not rows:
        raise DatasetError(f"{path}: no rows")
    rows = _filter_categories(path, rows, categories, exclude_categories)
    audio = Path(audio_dir) if audio_dir is not None else path.parent.parent / "audio"
    names: dict[int, str] = {}
    entries: list[tuple[Path, int, int]] = []
    for line, row in enumerate(rows, start=2):
        target = _int_field(path, line, row, "target")
        fold = _int_field(path, line, row, "fold")
        if names.setdefault(target, row["category"]) != row["category"]:
            raise DatasetError(
                f"{path}:{line}: target {target} is both {names[target]!r} and {row['category']!r}"
            )
        entries.append((audio / row["filename"], target, fold))
    rank = {target: i for i, target in enumerate(sorted(names))}
    labels = [names[target] for target in sorted(names)]
    clips = [Clip(file, (rank[target],), fold) for file, target, fold in entries]
    if folds is not None:
        clips = [c for c in clips if c.fold in set(folds)]
    _check_exists(clips, path)
    return ClipSet(clips, labels, multi_label=False, name=path.stem)


def _filter_categories(
    path: Path,
    rows: list[dict[str, str]],
    keep: Sequence[str] | None,
    drop: Sequence[str] | None,
) -> list[dict[str, str]]:
    """The rows whose category is in ``keep`` (when given) and not in ``drop``."""
    known = {row["category"] for row in rows}
    for option, names in (("categories", keep), ("exclude_categories", drop)):
        unknown = sorted(set(names or ()) - known)
        if unknown:
            raise DatasetError(f"{path}: {option}: unknown categor(ies) {unknown}")
    out = [
        row
        for row in rows
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
    _check_exists(clip_set.clips, Path(root))
    return clip_set


def read_class_folders_as_found(
    root: str | Path,
    num_folds: int | None = None,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
    problems: list[str] | None = None,
) -> ClipSet:
    """``read_class_folders`` with broken links kept, for a caller that checks every file itself and leaves
    the unusable ones out with a warning (``streamd evaluate --folders``, as ``train --data`` does); a
    class folder without audio files is left out, with a line in ``problems`` when given."""
    root = Path(root)
    if not root.is_dir():
        raise (
            DatasetError(f"{root}: is a file, not a dataset folder")
            if root.exists()
            else not_found(root, "dataset folder")
        )
    if num_folds is not None and num_folds < 1:
        raise DatasetError(f"{root}: num_folds must be at least 1, got {num_folds}")
    clips: list[Clip] = []
    labels: list[str] = []
    others: list[Path] = []
    for class_dir in class_dirs(root):
        files, other = folders.split_files(class_dir, tuple(extensions))
        others += other
        if not files:
            if problems is not None:
                problems.append(empty_class_note(class_dir, tuple(extensions)))
            continue
        index = len(labels)
        labels.append(class_dir.name)
        for i, file in enumerate(files):
            fold = None if num_folds is None else i % num_folds + 1
            clips.append(Clip(file, (index,), fold))
    if not clips:
        kinds = ", ".join(sorted(e.lower() for e in extensions))
        raise DatasetError(f"{root}: no class folders with audio files ({kinds})")
    if others and problems is not None:
        problems.append(folders.other_files_note(others))
    return ClipSet(clips, labels, multi_label=False, name=root.name)


def read_label_indices(path: str | Path) -> tuple[list[str], dict[str, int]]:
    """``class_labels_indices.csv`` -> (display names by index, mid -> index)."""
    path = Path(path)
    rows = _read_csv(path, ["index", "mid", "display_name"])
    by_index: dict[int, tuple[str, str]] = {}
    for line, row in enumerate(rows, start=2):
        by_index[_int_field(path, line, row, "index")] = (row["mid"], row["display_name"])
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
        _check_exists([c for c in clips if c.fold == fold], path)
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


def read_own(root: str | Path, holdout_frac: float = 0.1) -> ClipSet:
    """A user's own data: class folders, train/val/test folders or a path,label[,split] CSV
    (``training.own_data``); splits become folds train 1, val 2, test 3, carved held-out part 4."""
    from training.own_data import read_own_data

    data = read_own_data(root, holdout_frac)
    for problem in data.problems:
        print(f"warning: {problem}", flush=True)
    return data.clip_set


READERS["own"] = read_own
