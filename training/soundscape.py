"""Streaming evaluation data: soundscapes of labelled clips joined by background, and their scoring.

A soundscape is a list of clips placed one after another with gaps in between, over a continuous quiet
background (a given recording looped, or seeded pink noise). Its ground truth is one ``Event`` per
clip, whose ``onset_s``/``offset_s`` bound the clip's audible part (ESC-50 clips are often padded with
silence), so latency is measured from when the sound really starts.


Their scoring against the daemon's predictions is ``training.soundscape_scoring``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Event:
    """One placed clip: its span in the soundscape and the audible part inside it (seconds)."""

    label: str
    start_s: float
    end_s: float
    onset_s: float
    offset_s: float
    source: str = ""


@dataclass
class Soundscape:
    wave: np.ndarray  # (N,) float32 mono
    sample_rate: int
    events: list[Event]

    @property
    def duration_s(self) -> float:
        return self.wave.size / self.sample_rate

    def truth_json(self) -> dict[str, Any]:
        """Ground truth as plain JSON."""
        return {
            "sample_rate": self.sample_rate,
            "duration_s": self.duration_s,
            "events": [asdict(e) for e in self.events],
        }


def audible_span(wave: np.ndarray, sample_rate: int, threshold_db: float = -35.0, frame_s: float = 0.02):
    """``(start_s, end_s)`` of the frames whose RMS is within ``threshold_db`` of the loudest frame.

    Returns ``(0, 0)`` for a silent clip.
    """
    hop = max(1, int(frame_s * sample_rate))
    n = wave.size // hop
    if n == 0:
        return 0.0, 0.0
    rms = np.sqrt(np.mean(wave[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1))
    peak = rms.max()
    if peak <= 0:
        return 0.0, 0.0
    loud = np.nonzero(rms >= peak * 10 ** (threshold_db / 20))[0]
    return float(loud[0] * hop / sample_rate), float((loud[-1] + 1) * hop / sample_rate)


def pink_noise(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Pink (1/f power) noise with unit RMS, shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.arange(spectrum.size, dtype=np.float64)
    freqs[0] = 1.0
    noise = np.fft.irfft(spectrum / np.sqrt(freqs), n=num_samples)
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def _background(num_samples: int, rng: np.random.Generator, background: np.ndarray | None, level_dbfs: float):
    base = (
        pink_noise(num_samples, rng) if background is None else np.resize(np.asarray(background), num_samples)
    )
    rms = float(np.sqrt(np.mean(np.asarray(base, dtype=np.float64) ** 2)))
    return (base * (10 ** (level_dbfs / 20) / max(rms, 1e-12))).astype(np.float32)


def _can_follow(counts: dict[str, int], last: str) -> bool:
    """Whether ``counts`` can still be laid out with no two equal neighbours after ``last``."""
    rest = sum(counts.values())
    return all(c <= (rest // 2 if label == last else (rest + 1) // 2) for label, c in counts.items())


def order_without_repeats(labels: Sequence[str], rng: np.random.Generator) -> list[int]:
    """A random order of ``labels``' indices with no two equal neighbours whenever one exists."""
    pools: dict[str, list[int]] = {}
    for i in rng.permutation(len(labels)):
        pools.setdefault(labels[int(i)], []).append(int(i))
    order: list[int] = []
    last = None
    while any(pools.values()):
        candidates = [label for label in sorted(pools) if pools[label] and label != last]
        candidates = [candidates[int(k)] for k in rng.permutation(len(candidates))]
        feasible = []
        for label in candidates:
            counts = {name: len(pool) - (name == label) for name, pool in pools.items()}
            if _can_follow(counts, label):
                feasible.append(label)
        pick = (feasible or candidates or [max(pools, key=lambda name: len(pools[name]))])[0]
        order.append(pools[pick].pop())
        last = pick
    return order


def build_soundscape(
    clips: Sequence[tuple[np.ndarray, str, str]],
    rng: np.random.Generator,
    sample_rate: int = 16000,
    gap_s: tuple[float, float] = (1.0, 3.0),
    background: np.ndarray | None = None,
    background_dbfs: float = -50.0,
    lead_s: float = 1.0,
) -> Soundscape:
    """Join ``clips`` (wave, label, source name) in a random order without neighbouring repeats.

    Gaps are drawn uniformly from ``gap_s``; ``lead_s`` of background comes first and a last gap ends it.
    Clips are added onto the background; the sum is clipped to [-1, 1].
    """
    if not clips:
        raise ValueError("a soundscape needs at least one clip")
    order = order_without_repeats([label for _, label, _ in clips], rng)
    gaps = rng.uniform(gap_s[0], gap_s[1], size=len(clips))
    starts, cursor = [], round(lead_s * sample_rate)
    for k, i in enumerate(order):
        starts.append(cursor)
        cursor += clips[i][0].size + round(gaps[k] * sample_rate)
    wave = _background(cursor, rng, background, background_dbfs)
    events = []
    for start, i in zip(starts, order, strict=True):
        clip, label, source = clips[i]
        wave[start : start + clip.size] += clip.astype(np.float32)
        on, off = audible_span(clip, sample_rate)
        t0 = start / sample_rate
        events.append(Event(label, t0, t0 + clip.size / sample_rate, t0 + on, t0 + off, source))
    return Soundscape(np.clip(wave, -1.0, 1.0), sample_rate, events)


def load_clips(
    paths_and_labels: Sequence[tuple[Path, str]], sample_rate: int
) -> list[tuple[np.ndarray, str, str]]:
    """Decode clips for ``build_soundscape`` (any format, resampled to ``sample_rate`` mono)."""
    from audio_core.audio_file import read_audio

    return [(read_audio(path, sample_rate), label, Path(path).name) for path, label in paths_and_labels]


def pick_clips(
    paths_and_labels: Sequence[tuple[Path, str]], count: int, rng: np.random.Generator
) -> list[tuple[Path, str]]:
    """``count`` clips drawn without replacement, spread over labels (round-robin over shuffled labels)."""
    by_label: dict[str, list[tuple[Path, str]]] = {}
    for item in paths_and_labels:
        by_label.setdefault(item[1], []).append(item)
    for items in by_label.values():
        rng.shuffle(items)  # type: ignore[arg-type]
    labels = [str(x) for x in rng.permutation(sorted(by_label))]
    rounds = max((len(items) for items in by_label.values()), default=0)
    spread = [by_label[label][r] for r in range(rounds) for label in labels if r < len(by_label[label])]
    return spread[:count]
