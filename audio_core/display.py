"""File names as text for one-line messages."""

from __future__ import annotations

import os
import re

from audio_core.input_fd import STDIN

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # control characters: shown escaped in messages


def display_path(path: str | os.PathLike[str] | bytes) -> str:
    """``path`` as text for messages: undecodable bytes shown as ``\\xNN`` (never a lone surrogate)."""
    if str(path) == STDIN:
        return "<stdin>"
    text = os.fsencode(path).decode("utf-8", errors="backslashreplace")
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)  # a newline or escape code stays one line
