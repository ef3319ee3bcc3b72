"""Write a file so that readers only ever see a complete one, even with several writers at once."""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it over ``path``.

    Each call gets a temporary name of its own (process id and a random part, same suffix as ``path``),
    so parallel writers of one path never rename each other's half-written files: the last complete
    one wins. The temporary file is removed if ``write`` fails. The result keeps the permissions of the
    file it replaces (a new one gets those ``open`` gives: 0o666 less the umask), whatever mode the writer
    created the temporary file with (safetensors, for one, creates it 0o600).
    """
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex}.tmp{path.suffix}")
    try:
        write(tmp)
        os.chmod(tmp, _mode_for(path))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _mode_for(path: Path) -> int:
    """The permission bits ``path`` should end with: its own if it exists, else a new file's."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without setting it (``os.umask`` would change it for every thread for a
    moment); 0o022 where ``/proc`` does not say."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022
