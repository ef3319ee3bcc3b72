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
