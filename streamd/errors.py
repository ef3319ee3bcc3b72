"""User-facing errors: one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations


class StreamdError(Exception):
    """An error whose message is shown to the user as is; ``exit_code`` is the process exit status."""

    exit_code: int = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(StreamdError):
    """A configuration file or option is invalid (unknown key, wrong type, bad value)."""


class AudioInputError(StreamdError):
    """An audio file or device cannot be used."""


class CheckpointError(StreamdError):
    """A checkpoint is missing, corrupt or does not match what was asked for."""
