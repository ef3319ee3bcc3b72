"""The files that describe a data set (CSV metadata, lists of clips): read as UTF-8 text, each row with the
line it ends on, and every problem a ``DatasetError`` naming the file and the line."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from training.clips import Clip


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


def read_csv(path: Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """The rows of a CSV with a header naming ``required`` columns, each with the line it ends on."""
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
        rows = []
        for row in reader:
            fields = {k.strip(): v for k, v in row.items() if k is not None}
            short = next((c for c in required if fields.get(c) is None), None)
            if short is not None:  # csv fills the columns a short row lacks with None
                raise DatasetError(
                    f"{path}:{reader.line_num}: no {short!r} value: the row has fewer fields than the header"
                )
            rows.append((reader.line_num, {k: (v or "").strip() for k, v in fields.items()}))
        return rows


def int_field(path: Path, line: int, row: dict[str, str], name: str) -> int:
    """A row's integer column; ``DatasetError`` naming the line when it is not one."""
    try:
        return int(row[name])
    except ValueError:
        raise DatasetError(f"{path}:{line}: column {name!r} is not an integer ({row[name]!r})") from None


def check_exists(clips: list[Clip], source: Path) -> None:
    """``DatasetError`` naming the first clip whose file is missing (and how many more are)."""
    missing = [c.path for c in clips if not Path(c.path).is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        what = "is a folder, not a file" if Path(missing[0]).is_dir() else "does not exist"
        raise DatasetError(f"{source}: audio file {missing[0]} {what}{more}")
