"""Which audio file a path of ``classify --windows`` names, and how its outputs name it.

A file is identified by where it really is (``os.path.realpath``): the same file under another spelling
(``many/f1.wav``, ``./many/f1.wav``, its absolute path, a symlink to it) is one file, classified once (a
note names each later path, ``repeat_notes``), and two files of one name in different folders are two.
Outputs name a file by its absolute path (``shown``: the current folder joined to what was typed, ``.``
dropped, symlinks kept), so their rows are never ambiguous whatever folder a run started in. Standard
input (``-``) is itself.

Progress lists written before this recorded only the name typed (``file``); ``resolved_entries`` gives
their entries an identity where one can be told, and refuses the list in one line where it cannot.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audio_core.audio_file import STDIN, display_path
from streamd.errors import ConfigError


@dataclass(frozen=True)
class AudioFile:
    """A file to classify: ``shown`` as outputs name it, ``identity`` as the progress list knows it."""

    shown: str
    identity: str


def audio_file(path: str) -> AudioFile:
    """The file ``path`` names, seen from the current folder."""
    if path == STDIN:
        return AudioFile(STDIN, STDIN)
    return AudioFile(str(Path(path).absolute()), os.path.realpath(path))


def unique_files(paths: Iterable[str]) -> tuple[list[AudioFile], list[tuple[str, str]]]:
    """The files ``paths`` name, each once (the first spelling of a file named twice is kept), and each
    later path that names one of them again, with the path that named it first (both as typed)."""
    files: dict[str, AudioFile] = {}
    first: dict[str, str] = {}
    repeats: list[tuple[str, str]] = []
    for path in paths:
        file = audio_file(path)
        if file.identity in files:
            repeats.append((path, first[file.identity]))
        else:
            files[file.identity], first[file.identity] = file, path
    return list(files.values()), repeats


def repeat_notes(repeats: list[tuple[str, str]], limit: int = 10) -> list[str]:
    """One line per path that names a file named before (``unique_files``), the first ``limit`` of them,
    then one for the rest."""
    notes = []
    for path, first in repeats[:limit]:
        same = "is given again" if path == first else f"is the same file as {display_path(first)}"
        notes.append(f"{display_path(path)} {same}: classified once")
    if len(repeats) > limit:
        notes.append(f"{len(repeats) - limit} more path(s) name a file named before: each classified once")
    return notes


def source_stamp(path: str) -> list[int] | None:
    """``[size, mtime_ns]`` of an audio file (None for standard input or a file that cannot be read)."""
    if path == STDIN:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def _identity_of_typed_name(entry: dict[str, Any]) -> str | None:
    """The identity of an entry that records only the name typed: standard input and an absolute name
    name one file wherever the run started; a relative name only where the current folder holds the
    very file classified (its recorded size and modification time), else None."""
    name = str(entry["file"])
    if name == STDIN or os.path.isabs(name):
        return audio_file(name).identity
    recorded = entry.get("source")
    if recorded is not None and source_stamp(name) == recorded:
        return os.path.realpath(name)
    return None


def resolved_entries(entries: list[dict[str, Any]], out: Path) -> tuple[list[dict[str, Any]], bool]:
    """``entries`` of a progress list, each with its file's identity (``path``), and whether any had to
    be resolved (a list an earlier streamd wrote). A relative name that cannot be told to be the file it
    was (another folder, the file gone or changed) is a ``ConfigError``: it might be any file, so
    nothing is skipped on its account."""
    resolved, unknown = [], []
    for entry in entries:
        identity = entry.get("path") or _identity_of_typed_name(entry)
        if identity is None:
            unknown.append(str(entry["file"]))
        resolved.append({**entry, "path": identity})
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise ConfigError(
            f"{out} was begun by an earlier streamd, which recorded files by the names typed: "
            f"{display_path(unknown[0])}{more} is not, in {display_path(os.getcwd())}, the file it "
            "classified; run again from the folder that run was started in, or choose another output"
        )
    return resolved, any("path" not in entry for entry in entries)
