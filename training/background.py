"""Background examples: audio in which there is nothing to name, for a classifier to learn "no class".

Kinds: digital silence, white / pink / brown noise and 50 / 60 Hz mains hum (with its odd harmonics), each
at a quiet random level (``level_min_dbfs``..``level_max_dbfs`` RMS), and the data's own quiet stretches
(the frames of training clips more than ``quiet_db`` below the clip's loudest frame). Training gives them
the all-zero target (``training.losses.NO_CLASS``): for a softmax model the loss spreads a target's missing
mass evenly over the classes, so on background every score tends to ``1 / num_classes``; for a sigmoid
(multi-label) model every score tends to 0.

``background_wave`` is also the source of the long background recordings ``scripts/false_events.py``
replays to count false events per hour.
"""

from __future__ import annotations

import math

import numpy as np

from models.common import FeatureConfig
from training.soundscape import pink_noise

KINDS = ("silence", "white", "pink", "brown", "hum50", "hum60")
LEVEL_MIN_DBFS = -70.0
LEVEL_MAX_DBFS = -35.0


def _unit_rms(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2))), 1e-12)


def brown_noise(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Brown (1/f² power) noise with unit RMS: integrated white noise with its drift removed."""
    walk = np.cumsum(rng.standard_normal(num_samples))
    ramp = np.linspace(walk[0], walk[-1], num_samples)
    return _unit_rms(walk - ramp)


def mains_hum(num_samples: int, sample_rate: int, freq_hz: float, rng: np.random.Generator) -> np.ndarray:
    """Mains hum: ``freq_hz`` and its odd harmonics (3, 5, 7) (random phases, falling levels), unit RMS."""
    t = np.arange(num_samples) / sample_rate
    wave = np.zeros(num_samples)
    for k, level in ((1, 1.0), (3, 0.5), (5, 0.25), (7, 0.12)):
        wave += level * np.sin(2 * math.pi * k * freq_hz * t + rng.uniform(0, 2 * math.pi))
    return _unit_rms(wave)


def background_wave(
    kind: str, num_samples: int, sample_rate: int, level_dbfs: float, rng: np.random.Generator
) -> np.ndarray:
    """``num_samples`` of one background ``kind`` (see ``KINDS``) at ``level_dbfs`` RMS, float32."""
    if kind == "silence":
        return np.zeros(num_samples, dtype=np.float32)
    if kind == "white":
        base = _unit_rms(rng.standard_normal(num_samples))
    elif kind == "pink":
        base = pink_noise(num_samples, rng)
    elif kind == "brown":
        base = brown_noise(num_samples, rng)
    elif kind in ("hum50", "hum60"):
        base = mains_hum(num_samples, sample_rate, float(kind[3:]), rng)
    else:
        raise ValueError(f"unknown background kind {kind!r}; known: {', '.join(KINDS)}")
    return (base * 10 ** (level_dbfs / 20)).astype(np.float32)


def quiet_stretches(x: np.ndarray, quiet_db: float = 30.0, min_frames: int = 8) -> list[np.ndarray]:
    """The quiet frames of each clip ``(N, T, F)`` (un-normalised log-mel): runs of at least ``min_frames``
    frames more than ``quiet_db`` below the clip's loudest; all-zero padding frames are never taken."""
    out = []
    drop = quiet_db * math.log(10) / 10
    for clip in x:
        real = ~np.all(clip == 0, axis=1)
        if real.sum() < min_frames:
            continue
        power = np.logaddexp.reduce(clip.astype(np.float64), axis=1)
        quiet = real & (power < power[real].max() - drop)
        if quiet.sum() >= min_frames:
            out.append(clip[quiet])
    return out


def background_fbanks(
    count: int,
    features: FeatureConfig,
    frames: int,
    seed: int = 0,
    quiet: list[np.ndarray] | None = None,
) -> np.ndarray:
    """``count`` un-normalised background fbanks ``(count, frames, F)``, kinds taken in turn (quiet
    stretches of the data as one more kind when given, tiled to length).
    """
    from audio_core.fbank import compute_fbank

    rng = np.random.default_rng(seed)
    kinds = list(KINDS) + (["quiet"] if quiet else [])
    rate, shift = features.sample_rate, features.frame_shift
    num_samples = (frames - 1) * shift + features.frame_length
    out = np.zeros((count, frames, features.num_mel_bins), dtype=np.float32)
    for i in range(count):
        kind = kinds[i % len(kinds)]
        if kind == "quiet":
            stretch = quiet[int(rng.integers(len(quiet)))]
            start = int(rng.integers(len(stretch)))
            fbank = np.resize(np.roll(stretch, -start, axis=0), (frames, stretch.shape[1]))
        else:
            level = float(rng.uniform(LEVEL_MIN_DBFS, LEVEL_MAX_DBFS))
            wave = background_wave(kind, num_samples, rate, level, rng)
            fbank = compute_fbank(wave, features).numpy()[:frames]
        out[i, : len(fbank)] = fbank
    return out


def with_background(
    x: np.ndarray, y: np.ndarray, fraction: float, features: FeatureConfig, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Training arrays plus ``round(fraction * N)`` background examples with the no-class target."""
    from training.losses import NO_CLASS

    count = round(fraction * len(x))
    if count <= 0:
        return x, y
    bg = background_fbanks(count, features, x.shape[1], seed, quiet_stretches(x))
    if y.ndim == 2:  # multi-hot targets: background is the all-zero row
        y_bg = np.zeros((count, y.shape[1]), dtype=y.dtype)
    else:
        y_bg = np.full(count, NO_CLASS, dtype=y.dtype)
    return np.concatenate([x, bg]), np.concatenate([y, y_bg])


def check_stream_background(background: float, on_streams: bool) -> None:
    """Refuse ``train.background`` with stream training, where it would do nothing: there the background
    between the clips is what learns "nothing" (``[train.sequences] background_steps = "no_class"``)."""
    if background > 0 and on_streams:
        raise ValueError(
            f"train.background = {background:g} adds background clips to training on clips; training on "
            "streams ([train.sequences] length_s > 0) has background between its clips instead: set "
            'train.sequences.background_steps = "no_class" to learn "nothing" there, and train.background = 0'
        )
