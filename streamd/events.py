"""Events: turn per-window label scores into ``start`` / ``end`` messages.

A window *hits* a label when its score reaches the label's threshold. ``min_hits`` consecutive hits start
an event (``t_start`` = start of the first hitting window); it stays open while hits keep coming and ends
once ``hold_s`` seconds of stream time have passed since the end of its last hitting window without a new
hit (``t_end`` = end of that last hitting window). ``peak_score`` is the highest score seen in the event.
Only labels in ``allow`` (when given) and not in ``deny`` are considered.

``EventDetector`` does this as windows arrive, with explicit per-label state; ``find_events`` is the plain
offline reference over a whole sequence, and the two must agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamd import messages
from streamd.errors import ConfigError

Window = tuple[float, float, Mapping[str, float]]  # (t_start, t_end, scores)


@dataclass
class EventConfig:
    """Event rules: a default threshold, per-label thresholds, allow/deny lists, ``min_hits``, ``hold_s``."""

    threshold: float = 0.5
    thresholds: dict[str, float] = field(default_factory=dict)
    allow: list[str] = field(default_factory=list)
    deny: list[str] = field(default_factory=list)
    min_hits: int = 2
    hold_s: float = 2.0

    def __post_init__(self) -> None:
        _check_score("events.threshold", self.threshold)
        for label, value in self.thresholds.items():
            _check_score(f"events.thresholds.{label}", value)
        if (
            isinstance(self.min_hits, bool)
            or not isinstance(self.min_hits, int)
            or not 1 <= self.min_hits <= MAX_MIN_HITS
        ):
            raise ConfigError(
                f"events.min_hits must be an integer >= 1 and <= {MAX_MIN_HITS}, got {self.min_hits!r}"
            )
        _check_number("events.hold_s", self.hold_s)
        if not 0 <= self.hold_s <= MAX_HOLD_S:
            raise ConfigError(f"events.hold_s must be in [0, {MAX_HOLD_S:g}] s, got {self.hold_s}")
        for name in ("allow", "deny"):
            values = getattr(self, name)
            if not all(isinstance(v, str) and v for v in values):
                raise ConfigError(f"events.{name} must be a list of label names")

    def threshold_for(self, label: str) -> float:
        """The score a window needs for ``label`` to count as a hit."""
        return self.thresholds.get(label, self.threshold)

    def watches(self, label: str) -> bool:
        """Whether ``label`` may produce events (allow list, then deny list)."""
        return (not self.allow or label in self.allow) and label not in self.deny


MAX_MIN_HITS = 10_000
MAX_HOLD_S = 86_400.0


def sparse_hits_warning(cfg: EventConfig, hop_s: float, window_s: float) -> str | None:
    """A windowed model's events need ``min_hits`` windows in a row at or above the threshold: when they
    are a hop or more apart that far (half a window or more in all), a sound shorter than the audio they
    span raises no event though its windows score high (the ten sounds of examples/long.wav: ten events at
    hop 1 s, two at hop 5 s). One line, or None."""
    if cfg.min_hits < 2 or (cfg.min_hits - 1) * hop_s < window_s / 2:
        return None
    span = window_s + (cfg.min_hits - 1) * hop_s
    return (
        f"an event needs {cfg.min_hits} windows in a row at or above its threshold: at hop {hop_s:g} s they "
        f"span {span:g} s of audio, so a shorter sound may raise no event (a smaller --hop, or [events] "
        f"min_hits = 1)"
    )


def _check_score(name: str, value: Any) -> None:
    """A threshold is a score: a number in [0, 1]."""
    _check_number(name, value)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be a score in [0, 1], got {value!r}")


def _check_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")


@dataclass
class LabelTrack:
    """State of one label: a run of hits not yet long enough, or an open event."""

    run_start: float
    hits: int = 0
    peak: float = -math.inf
    last_hit_end: float = 0.0
    active: bool = False


class EventDetector:
    """Streaming event detection for one stream; ``update`` per window, ``flush`` at the end."""

    def __init__(self, cfg: EventConfig, stream: str) -> None:
        self.cfg = cfg
        self.stream = messages.check_stream(stream)
        self.tracks: dict[str, LabelTrack] = {}

    def _candidates(self, scores: Mapping[str, float]) -> list[str]:
        names = set(self.cfg.allow) if self.cfg.allow else set(scores) | set(self.tracks)
        return sorted(name for name in names if self.cfg.watches(name))

    def update(
        self, t_start: float, t_end: float, scores: Mapping[str, float], wall_time: float | None = None
    ) -> list[dict[str, Any]]:
        """Feed one window's scores; returns the event messages it causes (ends first, then starts)."""
        ends: list[dict[str, Any]] = []
        starts: list[dict[str, Any]] = []
        for label in self._candidates(scores):
            score = scores.get(label)
            track = self.tracks.get(label)
            if score is not None and score >= self.cfg.threshold_for(label):
                if track is None:
                    track = self.tracks[label] = LabelTrack(run_start=t_start)
                track.hits += 1
                track.peak = max(track.peak, float(score))
                track.last_hit_end = t_end
                if not track.active and track.hits >= self.cfg.min_hits:
                    track.active = True
                    starts.append(self._message(label, "start", track, t_end, wall_time))
            elif track is not None:
                if not track.active:
                    del self.tracks[label]
                elif t_end - track.last_hit_end >= self.cfg.hold_s:
                    ends.append(self._message(label, "end", track, track.last_hit_end, wall_time))
                    del self.tracks[label]
        return ends + starts

    def flush(self, t_end: float, wall_time: float | None = None) -> list[dict[str, Any]]:
        """End every open event (at its last hit, never after ``t_end``) and forget pending runs."""
        out = []
        for label in sorted(self.tracks):
            track = self.tracks[label]
            if track.active:
                end = max(track.run_start, min(track.last_hit_end, t_end))
                out.append(self._message(label, "end", track, end, wall_time))
        self.tracks.clear()
        return out

    def _message(
        self, label: str, state: str, track: LabelTrack, t_end: float, wall_time: float | None
    ) -> dict[str, Any]:
        return messages.event(
            self.stream, label, state, track.run_start, t_end, track.peak, wall_time=wall_time
        )


def _hit_runs(hits: Sequence[bool]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive hits as ``(first, last)`` indices."""
    runs, start = [], None
    for i, hit in enumerate([*hits, False]):
        if hit and start is None:
            start = i
        elif not hit and start is not None:
            runs.append((start, i - 1))
            start = None
    return runs


def find_events(
    cfg: EventConfig, stream: str, windows: Sequence[Window], *, wall_time: float | None = None
) -> list[dict[str, Any]]:
    """Offline reference: every event message for a whole sequence, in the order streaming emits them.

    Open events are ended as ``EventDetector.flush(windows[-1].t_end)`` would.
    """
    labels: set[str] = set(cfg.allow)
    if not cfg.allow:
        for _, _, scores in windows:
            labels.update(scores)
    emitted: list[tuple[int, int, str, dict[str, Any]]] = []  # (window index, 0=end 1=start, label, msg)
    for label in sorted(name for name in labels if cfg.watches(name)):
        emitted.extend(_label_events(cfg, stream, label, windows, wall_time))
    emitted.sort(key=lambda item: item[:3])
    return [msg for *_, msg in emitted]


def _label_events(
    cfg: EventConfig, stream: str, label: str, windows: Sequence[Window], wall_time: float | None
) -> Iterable[tuple[int, int, str, dict[str, Any]]]:
    threshold = cfg.threshold_for(label)
    scores = [w[2].get(label) for w in windows]
    hits = [s is not None and s >= threshold for s in scores]
    t_end = [w[1] for w in windows]
    resume = 0
    for first, last in _hit_runs(hits):
        if first < resume or last - first + 1 < cfg.min_hits:
            continue
        start_at = first + cfg.min_hits - 1
        start_peak = max(scores[first : start_at + 1])  # type: ignore[type-var]
        yield (
            start_at,
            1,
            label,
            messages.event(
                stream, label, "start", windows[first][0], t_end[start_at], start_peak, wall_time=wall_time
            ),
        )
        # Extend over later hits while no miss lies hold_s or more after the last hit.
        last_hit, j = start_at, start_at + 1
        while j < len(windows) and (hits[j] or t_end[j] - t_end[last_hit] < cfg.hold_s):
            if hits[j]:
                last_hit = j
            j += 1
        span = range(first, last_hit + 1)
        peak = max(scores[i] for i in span if hits[i])  # type: ignore[type-var]
        yield (
            j,
            0,
            label,
            messages.event(
                stream, label, "end", windows[first][0], t_end[last_hit], peak, wall_time=wall_time
            ),
        )
        resume = j + 1
