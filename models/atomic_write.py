"""Write a file so that readers only ever see a complete one, even with several writers at once."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it over ``path``.

    Each call gets a temporary name of its own (process id and a random part, same suffix as ``path``),
    so parallel writers of one path never rename each other's half-written files: the last complete
    one wins. The temporary file is removed if ``write`` fails.
    """
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex}.tmp{path.suffix}")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
