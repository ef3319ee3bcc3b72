"""Read any audio file libsndfile understands as 16 kHz mono float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

TARGET_RATE = 16000


def load_audio_16k(path: str | Path, target_rate: int = TARGET_RATE) -> np.ndarray:
    """Decode, downmix (channel mean), resample to ``target_rate``; ValueError if unusable."""
    path = Path(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise ValueError(f"{path}: cannot read audio ({exc})") from None
    if data.shape[0] == 0:
        raise ValueError(f"{path}: contains no samples")
    mono = data.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise ValueError(f"{path}: contains NaN or infinite samples")
    if rate != target_rate:
        mono = soxr.resample(mono, rate, target_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)
