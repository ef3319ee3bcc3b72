"""mpg123's own prints in one-shot commands: routed through the logger as the daemon routes them.

libsndfile decodes MP3 with mpg123, which prints its notes on damaged frames ("Note: Illegal Audio-MPEG-
Header ...", "[src/libmpg123/layer3.c:...] error: ...") straight onto file descriptor 2. The daemon routes
them through ``streamd.native_stderr`` (``streamd: warning: mpg123: ...``); ``decoder_notes`` does the same
around the reads of a one-shot command (``classify``) when any of its files is MPEG audio, so that every
line a user sees on stderr is one of streamd's.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from streamd.native_stderr import DECODER_PREFIX, NativeStderr

MPEG_SUFFIXES = (".mp3", ".mp2", ".mp1", ".mpga", ".mpeg")
ID3_MAGIC = b"ID3"


def _is_mpeg(path: str | Path) -> bool:
    """An MPEG audio file by its name, or a regular file whose bytes start as one (an ID3 tag or a frame
    sync); pipes, FIFOs and stdin are never read here (their bytes are the command's)."""
    if str(path).lower().endswith(MPEG_SUFFIXES):
        return True
    try:
        if str(path) == "-" or not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            head = f.read(3)
    except OSError:
        return False  # the reader says what is wrong with it
    return head.startswith(ID3_MAGIC) or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


@contextlib.contextmanager
def decoder_notes(paths: Iterable[str | Path]) -> Iterator[NativeStderr | None]:
    """Route fd 2 through the logger (``streamd: warning: mpg123: ...``) while the block runs, when any of
    ``paths`` is MPEG audio; yields the router (its ``lines`` counts them) or None."""
    route = NativeStderr(prefix=DECODER_PREFIX) if any(_is_mpeg(p) for p in paths) else None
    if route is not None:
        route.install()
    try:
        yield route
    finally:
        if route is not None:
            route.restore()
