"""One run at a time per output: an exclusive, non-blocking ``flock`` on a lock file beside the output,
held for the run (``classify --windows`` outputs, ``streamd train`` output folders)."""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO


class OutputBusy(ValueError):
    """Another process holds the output's lock."""


def lock_output(lock_path: Path, what: str, busy_message: str) -> tuple[IO[str], str | None]:
    """Hold ``lock_path``'s lock for the output named ``what``: ``(the open lock file, to keep open for the
    run; a note or None)``.

    ``OutputBusy(busy_message)`` when another run holds it; where the file system has no locks (NFS
    without a lock daemon) the run goes on with a note to say so."""
    held = lock_path.open("a")
    try:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        held.close()
        raise OutputBusy(busy_message) from None
    except OSError as exc:  # ENOLCK
        return held, f"{what} cannot be locked ({exc.strerror}): do not start a second run into it"
    return held, None
