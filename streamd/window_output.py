"""Writers of window-level results (``classify --windows``): CSV, JSON lines, Raven selection tables.

A file's rows are committed together, then recorded in a progress list (JSON lines: a first line with the
settings, then one ``{"file", "path", "bytes", "windows", "duration_s", "source"}`` line per finished
file; ``file`` is its absolute path as the rows name it, ``path`` where it really is, which identifies it
(``streamd.window_files``), ``source`` its size and modification time; a file whose end could not be read
adds ``error``: its readable part is in the output and it counts as done). A rerun with the same output and
settings (the checkpoint's content included) skips the files listed, whatever spelling names them, and
cuts a CSV / JSON-lines output back to the last recorded size, so rows of a file interrupted half-way are
never kept twice. A listed file whose audio
changed since is classified again into a Raven directory (its table replaced); a CSV / JSON-lines output
keeps its rows and the run says so. Failed files are not
recorded: a rerun tries them again. A progress list whose output is gone (a CSV / JSON-lines output
missing or shorter than recorded, every recorded Raven table missing) is stale: the run starts over; Raven
tables missing one by one are written again. One run at a time writes an output (``<progress list>.lock``).

- ``csv``: one file; a row per (window, label): file, window, begin_s, end_s, rank, label, score; a window
  with no label at or above ``--min-score`` has one row with rank, label and score empty.
- ``jsonl``: one file; an object per window: file, window, t_start, t_end, labels (``[]`` when no label
  reaches ``--min-score``), and ``digital_silence: true`` on every window of a file of digital silence.
- ``raven``: a directory; one tab-separated selection table per audio file
  (``<stem>.streamd.selection.table.txt``), a row per (window, label), the header Raven and BirdNET use
  (a file with no label at or above ``--min-score`` has a table with the header alone).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

from audio_core.audio_file import display_path
from audio_core.output_lock import OutputBusy, lock_output
from models.atomic_write import write_atomically
from streamd.errors import ConfigError, StreamdError
from streamd.window_files import AudioFile, resolved_entries, source_stamp
from streamd.window_formats import (
    CSV_HEADER,
    PART_SUFFIX,
    csv_text,
    jsonl_text,
    raven_table_name,
    raven_text,
)
from streamd.window_scoring import FileResult
from streamd.window_settings import as_recorded, differing

FORMATS = ("csv", "jsonl", "raven")
PROGRESS_NAME = "streamd.progress.jsonl"


def progress_path(out: Path, fmt: str) -> Path:
    """Where the progress list of an output lives."""
    return out / PROGRESS_NAME if fmt == "raven" else out.with_name(out.name + ".progress.jsonl")


def recorded_format(out: Path) -> str | None:
    """The format an earlier run wrote ``out`` in, from its progress list's first line (None: none)."""
    path = progress_path(out, "raven" if out.is_dir() else "csv")
    try:
        with path.open(errors="replace") as f:
            fmt = json.loads(f.readline())["settings"]["format"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return fmt if isinstance(fmt, str) else None


class WindowOutput:
    """Commits ``FileResult``s to ``out`` in format ``fmt``; knows which files a previous run finished."""

    def __init__(self, out: Path, fmt: str, settings: dict[str, Any], high_freq_hz: float) -> None:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")
        self.out, self.fmt, self.high_freq_hz = Path(out), fmt, high_freq_hz
        self.progress = progress_path(self.out, fmt)
        self.done: dict[str, dict[str, Any]] = {}  # by the file's identity (``AudioFile.identity``)
        self.notes: list[str] = []  # what the run is told on opening (stale list, files classified again)
        self._held: Any = None
        self._stream: io.TextIOWrapper | None = None
        try:
            self._open(settings)
        except OSError as exc:
            self.close()
            raise StreamdError(f"cannot write {self.out}: {exc.strerror or exc}") from None
        except BaseException:
            self.close()  # the lock goes with it
            raise

    def _open(self, settings: dict[str, Any]) -> None:
        if self.fmt == "raven":
            if self.out.exists() and not self.out.is_dir():
                raise ConfigError(f"{self.out}: Raven tables go into a directory; this is a file")
            self.out.mkdir(parents=True, exist_ok=True)
        elif self.out.is_dir():
            raise ConfigError(f"{self.out} is a directory; {self.fmt} output is one file")
        self._lock()
        if not self.progress.exists():
            if self.fmt != "raven" and self.out.exists() and self.out.stat().st_size:
                raise ConfigError(f"{self.out} exists without a progress list: remove it or choose another")
            self._write_progress({"settings": settings}, mode="w")
        elif not self._resume(settings):
            self._write_progress({"settings": settings}, mode="w")  # stale: start over
        self._stream = None if self.fmt == "raven" else self._open_stream()

    def _lock(self) -> None:
        """Hold ``<progress list>.lock`` (never renamed, unlike the list) for this run: a second run
        writing into the same output at once would duplicate every file's rows. Where the file system
        has no locks, a warning, and the run goes on."""
        try:
            self._held, note = lock_output(
                self.progress.with_name(self.progress.name + ".lock"),
                str(self.out),
                f"{self.out} is being written by another streamd run: wait for it, or choose another output",
            )
        except OutputBusy as exc:
            raise ConfigError(str(exc)) from None
        if note:
            self.notes.append(note)

    def _resume(self, settings: dict[str, Any]) -> bool:
        """Take the finished files from the progress list; False when none of them is left in the output
        (the list is stale and the run starts over, whatever its settings)."""
        lines = self._read_progress()
        if not lines:  # the settings line itself was cut short: nothing was recorded
            return False
        by_file = {entry.get("path") or entry["file"]: entry for entry in lines[1:]}
        recorded = list(by_file.values())  # a file's last record
        present = self._present(recorded)
        if not present:
            if recorded:
                held = f"{len(recorded)} file(s) its progress list records"
                self.notes.append(f"{self.out} no longer holds the {held}: starting over")
            return False
        recorded_settings, settings, unchecked = as_recorded(lines[0].get("settings"), settings)
        if unchecked:
            what = " and ".join(unchecked)
            self.notes.append(f"{self.out} was begun by an earlier streamd: its {what} not checked")
        if recorded_settings != settings:
            changed, again = differing(recorded_settings, settings)
            raise ConfigError(
                f"{self.out} was written with other settings ({changed}); "
                + (f"to continue it: {again}; " if again else "")
                + "choose another output to change them"
            )
        if len(present) < len(recorded):
            missing = len(recorded) - len(present)
            self.notes.append(f"{missing} recorded table(s) missing in {self.out}: classified again")
        present, upgraded = resolved_entries(present, self.out)
        if upgraded:  # recorded by name only: from now on by identity too, wherever the next run starts
            self._rewrite_progress([lines[0], *present])
            if self.fmt != "raven" and settings.get("min_score"):
                self.notes.append(
                    f"{self.out} was begun by an earlier streamd: its windows with no label at or above "
                    "--min-score have no row there (those of this run have one, with no label)"
                )
        self.done = {entry["path"]: entry for entry in present}
        return True

    def _read_progress(self) -> list[dict[str, Any]]:
        """The progress list's entries. A last line cut short (the process died while writing it) is
        dropped, and the list rewritten without it so that later records start on a line of their own:
        its file is classified again. Any other unreadable line is a one-line error."""
        texts = [line for line in self.progress.read_text(errors="replace").splitlines() if line.strip()]
        entries: list[dict[str, Any]] = []
        for number, text in enumerate(texts, start=1):
            try:
                entry = json.loads(text)
                if not isinstance(entry, dict) or (
                    "settings" not in entry if number == 1 else "file" not in entry
                ):
                    raise ValueError("not a progress entry")
            except ValueError:
                if number == len(texts):
                    self._rewrite_progress(entries)
                    break
                raise ConfigError(
                    f"{self.progress}: line {number} is not a progress entry: remove it and {self.out} "
                    "to start over"
                ) from None
            entries.append(entry)
        return entries

    def _rewrite_progress(self, entries: list[dict[str, Any]]) -> None:
        """Replace the progress list by ``entries`` (``write_atomically``: written aside, renamed over it)."""
        text = "".join(json.dumps(entry) + "\n" for entry in entries)
        write_atomically(self.progress, lambda tmp: tmp.write_text(text))

    def _present(self, recorded: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The recorded files whose rows the output still holds: for csv / jsonl all or none (none when the
        output is missing or shorter than recorded), for raven those whose table exists."""
        if self.fmt == "raven":
            return [entry for entry in recorded if (self.out / raven_table_name(entry["file"])).is_file()]
        size = self.out.stat().st_size if self.out.is_file() else -1
        return recorded if size >= max((entry["bytes"] for entry in recorded), default=0) else []

    def _open_stream(self) -> io.TextIOWrapper:
        size = max((entry["bytes"] for entry in self.done.values()), default=0)
        stream = open(self.out, "a+", newline="")  # noqa: SIM115 (kept open until close)
        stream.truncate(size)  # rows of a file interrupted half-way go
        stream.seek(size)
        if size == 0 and self.fmt == "csv":
            stream.write(",".join(CSV_HEADER) + "\n")
        return stream

    def _write_progress(self, entry: dict[str, Any], mode: str = "a") -> None:
        try:
            with self.progress.open(mode) as f:
                f.write(json.dumps(entry) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:  # a full disk: one line naming the progress list
            if exc.filename is not None:
                raise
            raise OSError(exc.errno, exc.strerror, str(self.progress)) from None

    def write(self, result: FileResult, identity: str, source: list[int] | None) -> None:
        """Commit a classified file (all its rows), then record it as done under ``identity``; ``source``:
        its ``source_stamp`` taken before it was read (a file still growing counts as changed later)."""
        assert result.error is None
        where = self.out
        try:
            if self.fmt == "raven":
                where = self.out / raven_table_name(result.file)
                temporary = where.with_name(where.name + PART_SUFFIX)
                try:
                    temporary.write_text(raven_text(result, self.high_freq_hz))
                    os.replace(temporary, where)
                finally:
                    temporary.unlink(missing_ok=True)
                size = 0
            else:
                assert self._stream is not None
                self._stream.write(csv_text(result) if self.fmt == "csv" else jsonl_text(result))
                self._stream.flush()
                os.fsync(self._stream.fileno())
                size = self._stream.tell()
        except OSError as exc:  # a disk that fills mid-run: one line naming the output (resume continues)
            if exc.filename is not None:
                raise
            raise OSError(exc.errno, exc.strerror, str(where)) from None
        entry = {
            "file": result.file,
            "path": identity,
            "bytes": size,
            "windows": len(result.windows),
            "duration_s": result.duration_s,
            "source": source,
        }
        if result.partial is not None:
            entry["error"] = result.partial
        self._write_progress(entry)
        self.done[identity] = entry

    def table_clash(self, files: list[AudioFile]) -> str | None:
        """Raven: the error when one of ``files`` would take the table of another file an earlier run
        finished (two folders' ``x.flac``), else None."""
        if self.fmt != "raven":
            return None
        tables = {raven_table_name(entry["file"]): entry for entry in self.done.values()}
        for file in files:
            other = tables.get(raven_table_name(file.shown))
            if other is not None and other["path"] != file.identity:  # not the file itself
                shown = (display_path(file.shown), display_path(other["file"]))
                return f"{shown[0]} would replace the Raven table of {shown[1]} in {self.out}: rename one"
        return None

    def changed(self, identity: str) -> bool:
        """Whether a finished file's audio changed (size or modification time) since it was classified."""
        recorded = self.done[identity].get("source")
        now = source_stamp(identity)
        return recorded is not None and now is not None and now != recorded

    def forget(self, identity: str) -> None:
        """Classify the file ``identity`` again (raven: its table is written anew)."""
        assert self.fmt == "raven"
        del self.done[identity]

    def close(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(OSError):  # after a failed write: rows not yet done are redone on resume
                self._stream.close()
            self._stream = None
        if self._held is not None:
            self._held.close()  # the lock goes with it
            self._held = None
