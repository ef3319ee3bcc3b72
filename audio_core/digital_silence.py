"""Digital silence: audio whose every sample is zero after the downmix to mono (stereo channels that
cancel included). A model's scores of it say nothing about the input: ``classify`` says so beside them,
and ``train --data`` / ``evaluate --folders`` leave such clips out (``training.own_data.scan_file``, the
same test on the same reader's chunks).
"""

from __future__ import annotations

import numpy as np

SILENCE_NOTE = "digital silence (every sample is zero after the downmix to mono): its scores mean nothing"


def has_signal(mono: np.ndarray) -> bool:
    """Whether any sample of ``mono`` (downmixed audio, as ``read_chunks`` gives it) is not zero."""
    return bool(np.any(mono))
