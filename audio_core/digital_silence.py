"""Digital silence: audio whose every sample has one value after the downmix to mono (all zeros, stereo
channels that cancel, or a constant offset: the fbank takes each frame's mean out, so a constant is
silence to the model). A model's scores of it say nothing about the input: ``classify`` says so beside
them, and ``train --data`` / ``evaluate --folders`` leave such clips out (``training.own_data.scan_file``,
the same test on the same reader's chunks).
"""

from __future__ import annotations

import numpy as np

SILENCE_NOTE = (
    "digital silence (every sample has one value after the downmix to mono): its scores mean nothing"
)


class SignalWatch:
    """Whether audio read chunk by chunk (``read_chunks``' downmixed chunks) has a signal: a sample that
    differs from the first one."""

    def __init__(self) -> None:
        self._first: np.floating | None = None
        self.heard = False

    def add(self, mono: np.ndarray) -> bool:
        """Take the next chunk; return whether a signal has been heard so far."""
        if self.heard or mono.size == 0:
            return self.heard
        if self._first is None:
            self._first = mono.flat[0]
        self.heard = bool(np.any(mono != self._first))
        return self.heard
