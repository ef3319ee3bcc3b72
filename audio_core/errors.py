"""User-facing errors: one clear line on stderr and a non-zero exit, never a traceback.

The base lives here, below ``streamd`` and ``training``, so that reading audio raises the same error
everywhere; ``streamd.errors`` adds the daemon's own kinds.
"""

from __future__ import annotations


class StreamdError(Exception):
    """An error whose message is shown to the user as is; ``exit_code`` is the process exit status."""

    exit_code: int = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class AudioInputError(StreamdError, ValueError):
    """An audio file or device cannot be used (a ``ValueError`` too, for data-loading callers)."""


class TruncatedAudio(AudioInputError):
    """A file that failed part-way (a read error, NaN samples): the audio before the failure was delivered
    whole (``read_s`` seconds of it); ``unread`` says how much was left as replay says it (``; its last
    N s were not classified``; empty when the length is not known, as from a pipe)."""

    def __init__(self, message: str, read_s: float, unread: str) -> None:
        super().__init__(message)
        self.read_s, self.unread = read_s, unread
