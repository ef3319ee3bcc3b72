"""Streaming evaluation data: soundscapes of labelled clips joined by background, and their scoring.

A soundscape is a list of clips placed one after another with gaps in between, over a continuous quiet
background (a given recording looped, or seeded pink noise). Its ground truth is one ``Event`` per
clip, whose ``onset_s``/``offset_s`` bound the clip's audible part (ESC-50 clips are often padded with
silence), so latency is measured from when the sound really starts.

Scoring takes the daemon's prediction messages (``streamd.messages`` bodies: ``t_start``, ``t_end``,
``labels`` best first, ``latency_ms``):

- per-window accuracy: a window's truth is the event whose audible span overlaps it most, provided the
  overlap covers at least ``min_overlap`` of the shorter of window and span; windows over background
  only have no truth and are counted apart;
- onset latency: for each event, the first prediction whose top-1 is the event's label, whose window
  ends after the onset and no later than ``offset + max_delay_s``; latency = that window's end plus the
  message's processing latency, minus the onset (so it includes the audio the window had to wait for).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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


@dataclass(frozen=True)
class WindowPrediction:
    """The part of a prediction message that scoring needs."""

    t_start: float
    t_end: float
    label: str
    score: float
    latency_s: float = 0.0


def predictions_from_messages(messages: Iterable[Mapping[str, Any]]) -> list[WindowPrediction]:
    """Prediction messages (any others are skipped) -> window predictions sorted by window end."""
    out = []
    for msg in messages:
        if msg.get("type") != "prediction" or not msg.get("labels"):
            continue
        best = msg["labels"][0]
        latency = float(msg.get("latency_ms", 0.0)) / 1000.0
        out.append(
            WindowPrediction(
                float(msg["t_start"]), float(msg["t_end"]), best["label"], best["score"], latency
            )
        )
    return sorted(out, key=lambda p: (p.t_end, p.t_start))


def window_truth(
    events: Sequence[Event], t_start: float, t_end: float, min_overlap: float = 0.5
) -> str | None:
    """The label of the event that dominates ``[t_start, t_end]`` (see module docstring), or None."""
    best, best_overlap = None, 0.0
    for e in events:
        overlap = min(t_end, e.offset_s) - max(t_start, e.onset_s)
        needed = min_overlap * min(t_end - t_start, e.offset_s - e.onset_s)
        if overlap > 0 and overlap >= needed and overlap > best_overlap:
            best, best_overlap = e.label, overlap
    return best


def score_windows(
    predictions: Sequence[WindowPrediction], events: Sequence[Event], min_overlap: float = 0.5
) -> dict[str, Any]:
    """Per-window accuracy over windows that have a truth; counts of the others."""
    correct = scored = 0
    for p in predictions:
        truth = window_truth(events, p.t_start, p.t_end, min_overlap)
        if truth is not None:
            scored += 1
            correct += int(p.label == truth)
    return {
        "windows": len(predictions),
        "scored_windows": scored,
        "background_windows": len(predictions) - scored,
        "window_accuracy": correct / scored if scored else None,
    }


def onset_latencies(
    predictions: Sequence[WindowPrediction],
    events: Sequence[Event],
    max_delay_s: float = 5.0,
    with_processing: bool = True,
) -> list[float | None]:
    """Seconds from each event's onset to its first correct top-1 (None if never within the limit).

    ``with_processing=False`` leaves out the messages' processing latency: the delay in stream time only.
    """
    out: list[float | None] = []
    for e in events:
        hit = next(
            (
                p
                for p in predictions
                if p.label == e.label
                and e.onset_s < p.t_end <= e.offset_s + max_delay_s
                and p.t_start < e.offset_s
            ),
            None,
        )
        processing = hit.latency_s if hit is not None and with_processing else 0.0
        out.append(None if hit is None else hit.t_end + processing - e.onset_s)
    return out


def score_stream(
    predictions: Sequence[WindowPrediction],
    events: Sequence[Event],
    min_overlap: float = 0.5,
    max_delay_s: float = 5.0,
) -> dict[str, Any]:
    """Window accuracy, detection rate and onset latency statistics of one replayed soundscape."""
    report = score_windows(predictions, events, min_overlap)
    latencies = onset_latencies(predictions, events, max_delay_s)
    delays = onset_latencies(predictions, events, max_delay_s, with_processing=False)
    found = [x for x in latencies if x is not None]
    report.update(
        {
            "events": len(events),
            "detected_events": len(found),
            "detection_rate": len(found) / len(events) if events else None,
            "onset_latency_median_s": float(np.median(found)) if found else None,
            "onset_latency_mean_s": float(np.mean(found)) if found else None,
            "onset_latencies_s": latencies,
            "onset_delays_s": delays,
        }
    )
    return report


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


def pool_reports(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Combine ``score_stream`` reports of several soundscapes (window counts summed, latencies pooled)."""
    scored = sum(r["scored_windows"] for r in reports)
    correct = sum(round((r["window_accuracy"] or 0.0) * r["scored_windows"]) for r in reports)
    latencies = [x for r in reports for x in r["onset_latencies_s"]]
    delays = [x for r in reports for x in r["onset_delays_s"]]
    found = [x for x in latencies if x is not None]
    events = sum(r["events"] for r in reports)
    return {
        "windows": sum(r["windows"] for r in reports),
        "scored_windows": scored,
        "background_windows": sum(r["background_windows"] for r in reports),
        "window_accuracy": correct / scored if scored else None,
        "events": events,
        "detected_events": len(found),
        "detection_rate": len(found) / events if events else None,
        "onset_latency_median_s": float(np.median(found)) if found else None,
        "onset_latency_mean_s": float(np.mean(found)) if found else None,
        "onset_latencies_s": latencies,
        "onset_delays_s": delays,
    }
