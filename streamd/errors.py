"""User-facing errors: one clear line on stderr and a non-zero exit, never a traceback.

``StreamdError`` and ``AudioInputError`` are defined in ``audio_core.errors`` (audio reading raises them
below this package) and re-exported here.
"""

from __future__ import annotations

from audio_core.errors import AudioInputError, StreamdError

__all__ = ["AudioInputError", "CheckpointError", "ConfigError", "StreamdError"]


class ConfigError(StreamdError):
    """A configuration file or option is invalid (unknown key, wrong type, bad value)."""


class CheckpointError(StreamdError):
    """A checkpoint is missing, corrupt or does not match what was asked for."""
