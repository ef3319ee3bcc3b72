"""The CSV layout of a user's own data (``streamd train --data clips.csv``): one row per clip,
``path,label[,split]``, paths relative to the CSV's folder, split train / val / test (empty = train).

A first row naming its path column is a header (``path``, ``file``, ``filename``, ...; unless a file of
that name lies beside the CSV), and then the columns are found by name in any order: the label by name
(``label``, ``class``, ``category``, ...) or else the first other column, the split only by name
(``split``, ``set``, ``subset``); columns left unread are said. A table exported with other columns or in
another order reads as it says.
"""

from __future__ import annotations

from pathlib import Path

from models.common import label_name
from training.audio_folders import identity
from training.dataset_files import DatasetError, csv_lines

SPLIT_ALIASES = {"": "train", "train": "train", "training": "train", "val": "val", "valid": "val"}
SPLIT_ALIASES |= {"validation": "val", "dev": "val", "test": "test", "eval": "test", "testing": "test"}
PATH_COLUMNS = ("path", "file", "filename", "file_name", "filepath", "file_path", "audio", "clip")
LABEL_COLUMNS = ("label", "class", "class_name", "category", "target")
SPLIT_COLUMNS = ("split", "set", "subset", "partition")


def _columns(header: list[str], folder: Path) -> tuple[int, int, int | None, list[str]] | None:
    """(path, label, split column, unread column names) of a header row, or None when the row is data.

    A header names its path column (``PATH_COLUMNS``; a first row whose "path" is a file beside the CSV is
    data); the label column is found by name, else it is the first other column that is not the split;
    the split column only by name."""
    names = [c.strip().lower().lstrip("\ufeff") for c in header]

    def find(options: tuple[str, ...]) -> int | None:
        return next((names.index(o) for o in options if o in names), None)

    path, label, split = find(PATH_COLUMNS), find(LABEL_COLUMNS), find(SPLIT_COLUMNS)
    if path is None or (folder / header[path].strip()).is_file():
        return None
    if label is None:
        label = next((i for i in range(len(names)) if i not in (path, split)), None)
        if label is None:
            return None
    unread = [header[i].strip() or "(unnamed)" for i in range(len(header)) if i not in (path, label, split)]
    return path, label, split, unread


def csv_entries(path: Path) -> tuple[list[tuple[Path, str, str]], list[str]]:
    """``(file, label, split)`` of every row of the CSV at ``path``, and notes (columns left unread); a
    DatasetError names a bad row."""
    numbered = [(n, r) for n, r in csv_lines(path, "list of clips") if r and any(c.strip() for c in r)]
    columns = _columns(numbered[0][1], path.parent) if numbered else None
    notes = []
    if columns is not None:
        numbered = numbered[1:]
        if columns[3]:
            hint = f" (a split column is named {' / '.join(SPLIT_COLUMNS)})" if columns[2] is None else ""
            notes.append(f"{path}: column(s) {', '.join(columns[3])} not read{hint}")
    at_path, at_label, at_split = columns[:3] if columns else (0, 1, 2)
    entries = []
    first_row: dict[Path, tuple[int, str]] = {}  # the resolved file -> (line, label) of its first listing
    for line, row in numbered:
        cells = [c.strip() for c in row]
        given = [cells[i] if i < len(cells) else "" for i in (at_path, at_label)]
        if not all(given):
            expected = (
                "path,label[,split]" if columns is None else "a path and a label in the header's columns"
            )
            raise DatasetError(f"{path}: line {line}: expected {expected}, got {','.join(cells)!r}")
        name, label = given[0], label_name(given[1])  # NFC, as a class folder's name
        text = cells[at_split] if at_split is not None and at_split < len(cells) else ""
        split = SPLIT_ALIASES.get(text.lower())
        if split is None:
            raise DatasetError(f"{path}: line {line}: split must be train, val or test, got {text!r}")
        file = Path(name)
        file = file if file.is_absolute() else path.parent / file
        # one row per clip: a second label is a mistake, and a second split would put a training clip
        # into the held-out report (a repeat in the same split would count it twice)
        seen = first_row.setdefault(identity(file), (line, label))
        if seen[0] != line:
            other = "" if seen[1] == label else f" with another label ({label!r}; first {seen[1]!r})"
            raise DatasetError(
                f"{path}: line {line}: {name} is listed again{other} (first on line {seen[0]}): "
                "one row per clip"
            )
        entries.append((file, label, split))
    if not entries:
        raise DatasetError(f"{path}: no rows (expected path,label[,split])")
    return entries, notes
