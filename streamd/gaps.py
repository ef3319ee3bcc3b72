"""Device outages in the stream: the clock runs on across them and no window spans one.

A live source reports where its audio stopped and how much of it never came (``Source.take_gaps``:
``(ring index where the audio resumes, native samples lost)``). ``SegmentedFrontEnd`` keeps one front
end (``audio_core.front_end``) per stretch of continuous audio: at a gap it closes the current stretch as if
the stream ended there (its end-aligned tail window, exactly what offline classification of that stretch
gives; a stretch shorter than one window is padded with silence to one, and that window's ``t_end`` is
where its audio ended), advances the stream clock by the lost time and starts a fresh fbank and window
state. Window indices keep counting; ``t_start``/``t_end`` are stream time (lost time included);
``end_sample`` stays in real (captured) samples, which is what maps back to the ring.

This module is pure: no threads, sockets or devices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from audio_core.front_end import front_end
from audio_core.windows import ColumnPlan, Window, WindowPlan
from streamd import messages


@dataclass(frozen=True)
class LostInterval:
    """Stream time ``[start_s, end_s)`` for which the device delivered no audio."""

    start_s: float
    end_s: float

    @property
    def lost_s(self) -> float:
        return self.end_s - self.start_s

    def describe(self) -> str:
        return (
            f"device outage: no audio from {self.start_s:.3f} s to {self.end_s:.3f} s of the stream "
            f"({self.lost_s:.3f} s lost); the stream clock skips it and no window spans it"
        )


class SegmentedFrontEnd:
    """A front end per continuous stretch of audio; ``samples`` is the stream clock."""

    def __init__(self, plan: WindowPlan | ColumnPlan) -> None:
        self.plan = plan
        self.rate = plan.features.sample_rate
        self.front = front_end(plan)
        self._real_before = 0  # real samples of the closed stretches
        self._clock_before = 0  # stream-clock samples before the current stretch (real + lost)
        self._index_before = 0  # windows emitted by the closed stretches
        self._tail_before = 0.0  # audio after the last whole column of the closed stretches
        self.lost_samples = 0
        self.intervals: list[LostInterval] = []
        self._new: list[LostInterval] = []
        self._waiting: list[tuple[int, int]] = []  # source gaps not yet reached by the reader

    @property
    def samples(self) -> int:
        """The stream clock in model-rate samples: real samples plus the lost ones."""
        return self._clock_before + self.front.samples

    @property
    def short_padding_s(self) -> float:
        """Silence added to a stream shorter than one window (its only stretch), else 0."""
        return self.front.short_padding_s

    @property
    def tail_s(self) -> float:
        """Real audio left unclassified after the last whole recurrent column of each stretch (each less
        than one step), else 0."""
        return self._tail_before + self.front.tail_s

    @property
    def real_samples(self) -> int:
        return self._real_before + self.front.samples

    def accept(self, samples: np.ndarray) -> list[Window]:
        """Feed real samples of the current stretch; the windows they completed, in stream time."""
        return self._shift(self.front.accept(samples))

    def finish(self) -> list[Window]:
        """End of stream: flush the current stretch."""
        return self._shift(self.front.finish())

    def gap(self, lost: int) -> list[Window]:
        """The audio stops here and resumes ``lost`` model-rate samples later: close this stretch (its
        tail window, as at the end of a stream), advance the clock and start a fresh front end."""
        if lost <= 0:
            return []
        start = self.samples
        out = self.finish() if self.front.samples else []
        # a stretch shorter than one window is padded with silence to one (as a short file is): that
        # window ends where the audio did, not inside the lost time
        out = [replace(w, t_end=min(w.t_end, start / self.rate)) if w.padded_s else w for w in out]
        self._real_before += self.front.samples
        self._index_before += self.front.next_index
        self._tail_before += self.front.tail_s
        self._clock_before = start + lost
        self.front = front_end(self.plan)
        self.lost_samples += lost
        interval = LostInterval(start / self.rate, (start + lost) / self.rate)
        self.intervals.append(interval)
        self._new.append(interval)
        return out

    def accept_chunk(
        self,
        start: int,
        mono: np.ndarray,
        resample: Callable[..., np.ndarray],
        gaps: Iterable[tuple[int, int]],
        native_rate: int,
    ) -> list[Window]:
        """Feed a native-rate chunk read from the ring at index ``start``, cut at the source's gaps
        (``(ring index where audio resumes, native samples lost)``); later gaps wait for their chunk.
        ``resample(chunk, last=False)`` brings audio to the model rate; at a gap it is called with
        ``last=True``, so the samples its filter holds end the stretch before the gap instead of being
        lost, and the audio after the gap starts with a fresh filter."""
        self._waiting.extend(gaps)
        out: list[Window] = []
        pos, end = 0, start + mono.shape[0]
        while self._waiting and self._waiting[0][0] < end:
            index, lost_native = self._waiting.pop(0)
            cut = min(max(0, index - start), mono.shape[0])
            lost = round(lost_native * self.rate / native_rate)
            out += self.accept(resample(mono[pos:cut], last=lost > 0))
            out += self.gap(lost)
            pos = max(pos, cut)
        return out + self.accept(resample(mono[pos:]))

    def take_intervals(self) -> list[LostInterval]:
        """Gaps marked since the last call (each to be announced once)."""
        new, self._new = self._new, []
        return new

    def counters(self) -> dict[str, int | float]:
        """``samples`` (real ones), ``outage_s`` (stream time lost to outages) and ``outages``."""
        return {
            "samples": self.real_samples,
            "outage_s": self.lost_samples / self.rate,
            "outages": len(self.intervals),
        }

    def _shift(self, windows: list[Window]) -> list[Window]:
        if not (self._clock_before or self._index_before):
            return windows
        offset_s = self._clock_before / self.rate
        return [
            replace(
                w,
                index=w.index + self._index_before,
                t_start=w.t_start + offset_s,
                t_end=w.t_end + offset_s,
                end_sample=w.end_sample + self._real_before,
                stretch=len(self.intervals),
            )
            for w in windows
        ]


def gap_status(stream: str, interval: LostInterval, counters: Mapping[str, Any]) -> dict[str, Any]:
    """The status announcing a lost interval: ``t_start``/``t_end`` are the interval itself."""
    return messages.status(
        stream, interval.start_s, interval.end_s, counters, "running", message=interval.describe()
    )


class SourceTimeline:
    """Ring indices of one source -> stream-time sample indices at the source's own rate: each outage
    (``(ring index where audio resumes, native samples lost)``, as ``Source.take_gaps`` reports it) moves
    what follows it on by the samples lost, so that source audio handed on (event clips) sits at the
    stream time its windows and events report."""

    def __init__(self) -> None:
        self.lost = 0  # native samples lost before the audio placed so far
        self._waiting: list[tuple[int, int]] = []

    def place(
        self, start: int, data: np.ndarray, gaps: Iterable[tuple[int, int]]
    ) -> list[tuple[int, np.ndarray]]:
        """The pieces of the chunk read at ring index ``start``, each with its stream-time index; a gap not
        yet reached waits for its chunk (as ``SegmentedFrontEnd.accept_chunk`` does)."""
        self._waiting.extend(gaps)
        pieces: list[tuple[int, np.ndarray]] = []
        pos, end = 0, start + data.shape[0]
        while self._waiting and self._waiting[0][0] < end:
            index, lost = self._waiting.pop(0)
            cut = min(max(0, index - start), data.shape[0])
            if cut > pos:
                pieces.append((start + pos + self.lost, data[pos:cut]))
            self.lost += lost
            pos = max(pos, cut)
        if pos < data.shape[0]:
            pieces.append((start + pos + self.lost, data[pos:]))
        return pieces
