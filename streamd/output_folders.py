"""Folders a command writes into (``evaluate --out``, ``--save-clips``, ``train --out``): checked before
any work starts."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from streamd.errors import ConfigError


def usable_folder_path(path: str | Path, option: str) -> Path:
    """Check, leaving nothing behind, that ``path`` is a folder or can be made one by this process (for a
    command that refuses its input only later and must leave nothing behind then: a missing folder is
    made and removed again); ``ConfigError`` naming ``option`` otherwise."""
    folder = Path(path).expanduser()
    if folder.is_symlink() and not folder.exists():
        raise ConfigError(f"{option} {folder}: a link to nothing")
    if folder.exists():
        if not folder.is_dir():
            raise ConfigError(f"{option} {folder}: exists and is not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"{option} {folder}: the folder is not writable")
        return folder
    existing = next((p for p in folder.absolute().parents if p.exists()), Path("/"))
    if not existing.is_dir():
        raise ConfigError(f"{option} {folder}: cannot create the folder ({existing} is not a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {folder}: cannot create the folder ({existing} is not writable)")
    _try_creating(folder, option)
    return folder


def _try_creating(folder: Path, option: str) -> None:
    """Create ``folder`` and the parents it lacks, then remove them again: a file system that refuses
    (``/proc``, ``/sys``, one mounted read-only) passed the checks above, and ``--check`` approved a
    ``--save-clips`` folder the run then refused."""
    missing = [p for p in [folder.absolute(), *folder.absolute().parents] if not p.exists()][::-1]
    made: list[Path] = []
    try:
        for path in missing:
            path.mkdir()
            made.append(path)
    except FileExistsError:
        pass  # made meanwhile by another: it can be
    except OSError as exc:
        raise ConfigError(f"{option} {folder}: cannot create the folder ({exc.strerror or exc})") from None
    finally:
        for path in reversed(made):
            with contextlib.suppress(OSError):  # filled meanwhile by another process: theirs now
                path.rmdir()


def writable_folder(path: str | Path, option: str) -> Path:
    """``usable_folder_path``, then create the folder (with its parents), so a bad folder is reported at
    start-up, not after the work it was to hold."""
    folder = usable_folder_path(path, option)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{option} {folder}: cannot create the folder ({exc.strerror or exc})") from None
    return folder
