"""File names as text for one-line messages and results."""

from __future__ import annotations

import os

from audio_core.input_fd import STDIN

_CONTROL = {c: repr(chr(c))[1:-1] for c in (*range(0x20), *range(0x7F, 0xA0))}  # shown escaped
# and a backslash too where it is no path separator: a name holding a backslash and an "n" is then told
# from one holding a newline, and one holding "\xff" from one holding that byte
_ESCAPES = _CONTROL if os.sep == "\\" else {**_CONTROL, ord("\\"): "\\\\"}


def display_path(path: str | os.PathLike[str] | bytes) -> str:
    """``path`` as text for messages and results, on one line, a different text for each name: control
    characters escaped (``\\n``, ``\\x1b``), a backslash as ``\\\\`` (on systems where names may hold
    one), and undecodable bytes as ``\\xNN`` (never a lone surrogate)."""
    if str(path) == STDIN:
        return "<stdin>"
    text = os.fsdecode(path).translate(_ESCAPES)  # undecodable bytes are lone surrogates here
    return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="backslashreplace")
