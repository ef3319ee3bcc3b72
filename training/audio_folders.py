"""The one way streamd lists class folders and the audio files below them.

``streamd train --data``, ``streamd evaluate --folders`` and the ``folders`` reader of training configs
all call these two functions, so that they agree on which files a folder holds:

- names starting with ``.`` (hidden files and folders, e.g. macOS ``._x.wav`` companions) are skipped;
- linked sub-folders are followed (each real folder once, so a link back up cannot loop);
- audio is found by extension (``AUDIO_EXTENSIONS``); a broken link with an audio extension is listed, so
  that the caller's file check reports it rather than losing it silently; the other visible files are
  counted (``split_files``), so that a caller can say what it left out;
- ``class_tree`` lists a folder of class folders with everything it leaves out said: files directly in
  the folder (no class), broken links where a class folder was expected, class folders without audio,
  files of other extensions; ``repeated_file`` finds one file listed twice (a link), which both refuse.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from audio_core.display import display_path
from models.common import label_name

AUDIO_EXTENSIONS = (
    ".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".aifc", ".au", ".opus", ".w64", ".rf64", ".caf",
)  # fmt: skip


def class_dirs(folder: Path) -> list[Path]:
    """The visible sub-folders of ``folder`` (links to folders included), sorted by name."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir())


def _visible_files(folder: Path) -> list[Path]:
    """Every visible file anywhere below ``folder``, sorted (each real folder walked once)."""
    seen: set[Path] = set()
    found: list[Path] = []
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = Path(top).resolve()
        if real in seen:  # a link to a folder already listed (or to one of its parents)
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # the same names on every file system
        found += [Path(top) / name for name in files if not name.startswith(".")]
    return sorted(found)


def audio_files(folder: Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[Path]:
    """Audio files anywhere below ``folder``, sorted; paths keep the names they were found under."""
    return split_files(folder, extensions)[0]


def split_files(
    folder: Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS
) -> tuple[list[Path], list[Path]]:
    """The visible files below ``folder`` in one walk: (audio by extension, the others), each sorted."""
    suffixes = {e.lower() for e in extensions}
    audio: list[Path] = []
    others: list[Path] = []
    for path in _visible_files(folder):
        (audio if path.suffix.lower() in suffixes else others).append(path)
    return audio, others


def other_files_note(files: list[Path]) -> str:
    """The one line that reports files left out for their extension."""
    return (
        f"{len(files)} file(s) left out: not audio by their extension (e.g. {display_path(files[0])}; "
        f"audio is {', '.join(AUDIO_EXTENSIONS)})"
    )


def empty_class_note(class_dir: Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> str:
    """The one line that reports a class folder holding no audio file (it is left out)."""
    return f"{display_path(class_dir)}: no audio files ({', '.join(extensions)}); left out"


def unusable_class_note(label: str, files: int) -> str:
    """The one line that reports a class none of whose files could be read (it is left out)."""
    return f"class {label!r}: none of its {files} file(s) is usable; left out"


def loose_files_note(folder: Path, said: tuple[Path, ...] = ()) -> str | None:
    """The one line that reports visible files directly in ``folder`` (beside its class folders: no class),
    naming the first as the other left-out lines do, or None; ``said``: files the caller reports
    otherwise."""
    loose = sorted(
        p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file() and p not in said
    )
    if not loose:
        return None
    where, example = display_path(folder), display_path(loose[0])
    return f"{len(loose)} file(s) directly in {where} belong to no class folder; left out, e.g. {example}"


def class_tree(
    folder: Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS, said: tuple[Path, ...] = ()
) -> tuple[list[tuple[Path, list[Path]]], list[Path], list[str]]:
    """A folder of class folders, as ``train --data`` and ``evaluate --folders`` both read one: (each class
    folder with its audio files, none empty; the files of other extensions; one line per thing left out:
    files directly in ``folder``, broken links where a class folder was expected, class folders without
    audio). The caller reports the other files (``other_files_note``) once, for all its trees."""
    problems = [note] if (note := loose_files_note(folder, said)) else []
    for link in sorted(p for p in folder.iterdir() if p.is_symlink() and not p.exists()):
        problems.append(f"{display_path(link)}: a broken link where a class folder was expected; left out")
    classes: list[tuple[Path, list[Path]]] = []
    others: list[Path] = []
    for class_dir in class_dirs(folder):
        files, other = split_files(class_dir, extensions)
        others += other
        if files:
            classes.append((class_dir, files))
        else:
            problems.append(empty_class_note(class_dir, extensions))
    return classes, others, problems


def identity(file: Path) -> Path:
    """The file a path names, the same however it is spelt (a link loop: its absolute spelling; the file
    check reports it)."""
    try:
        return file.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python 3.11)
        return Path(os.path.abspath(file))


def repeated_file(files: Iterable[Path]) -> tuple[Path, Path] | None:
    """The first file listed again under another path (a link), with the path it was first listed under."""
    first: dict[Path, Path] = {}
    for file in files:
        seen = first.setdefault(identity(file), file)
        if seen != file:
            return file, seen
    return None


def repeated_file_note(file: Path, seen: Path) -> str:
    """The one line that refuses a file listed twice in class folders."""
    return (
        f"{file} is the same file as {seen} (a link?): one file per clip, or a clip would be counted "
        "twice (or trained on and held out too)"
    )


def nested_classes_hint(file: Path, label: str) -> str:
    """For the one class of a data set, whose ``file`` is one: where its class folder's audio lies in two or
    more sub-folders (the classes one level down: ``--data`` named the folder above them), how to take
    those as the classes; else ""."""
    folder = next((p for p in Path(file).parents if label_name(p.name) == label), None)
    nested = [d for d in class_dirs(folder) if audio_files(d)] if folder is not None else []
    if len(nested) < 2:
        return ""
    names = ", ".join(d.name for d in nested[:3]) + (", ..." if len(nested) > 3 else "")
    return f"; its clips lie in {len(nested)} folders ({names}): to make those the classes, --data {folder}"
