"""Scoring a stream's predictions against a soundscape's events (``training.soundscape``).

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
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.soundscape import Event


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
    report.update(onset_statistics(latencies, delays))
    return report


def onset_statistics(latencies: list[float | None], delays: list[float | None]) -> dict[str, Any]:
    """Detection and onset figures of events' latencies (with processing) and delays (stream time only;
    None: never found): the delay does not depend on how loaded the machine was, the latency does."""
    found = [x for x in latencies if x is not None]
    in_stream = [x for x in delays if x is not None]
    return {
        "events": len(latencies),
        "detected_events": len(found),
        "detection_rate": len(found) / len(latencies) if latencies else None,
        "onset_latency_median_s": float(np.median(found)) if found else None,
        "onset_latency_mean_s": float(np.mean(found)) if found else None,
        "onset_delay_median_s": float(np.median(in_stream)) if in_stream else None,
        "onset_latencies_s": latencies,
        "onset_delays_s": delays,
    }


def pool_reports(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Combine ``score_stream`` reports of several soundscapes (window counts summed, latencies pooled)."""
    scored = sum(r["scored_windows"] for r in reports)
    correct = sum(round((r["window_accuracy"] or 0.0) * r["scored_windows"]) for r in reports)
    latencies = [x for r in reports for x in r["onset_latencies_s"]]
    delays = [x for r in reports for x in r["onset_delays_s"]]
    return {
        "windows": sum(r["windows"] for r in reports),
        "scored_windows": scored,
        "background_windows": sum(r["background_windows"] for r in reports),
        "window_accuracy": correct / scored if scored else None,
        **onset_statistics(latencies, delays),
    }
