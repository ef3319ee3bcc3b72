"""Event clips (``--save-clips DIR``, ``[clips]``): the source audio of each ended event, saved as FLAC.

The daemon hands this module every block of source audio (at the source's rate and channel count, before
downmixing) as the feature stage reads it, every event as the result stage makes it, and every published
message. Audio runs ahead of the results (by the queues between the stages: a minute or more in a replay
at ``--speed max``), so the results set what a stream keeps (``AudioHistory.forget_before``): back from
the newest published window as far as an unannounced event could start, from each open event's start
and each clip waiting for its post-roll; at most ``HEADROOM_S`` more than a clip.
An ``end`` message gains ``clip`` (the path the clip will have) at once, unless its audio is gone
(``clips_lost``). The clip, ``[t_start - pre_roll_s, t_end + post_roll_s]`` at the source rate (of a
longer event than ``max_clip_s`` its end: ``clips_truncated``), is cut once the post-roll has arrived
(or the stream has ended) and written by a thread of its own: FLAC (24-bit) written atomically, then a
JSON sidecar (the event message, stream, times, rate); if the sidecar cannot be written the FLAC is
removed again. Retention: ``streamd.clip_files``. A write that fails (disk full, unwritable directory)
is counted and logged once; the daemon goes on. With ``privacy = "drop_speech"`` a clip in which the
voice-activity detector (``streamd.privacy``) finds speech is not written but counted
(``clips_dropped_speech``); while the detector cannot be loaded, clips are not written either (fail
closed) and counted as ``clips_unchecked``. Counters are per stream (``counters_for``) and in total.
"""

from __future__ import annotations

import io
import json
import logging
import math
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamd.audio_history import AudioHistory
from streamd.clip_files import clip_name, enforce_retention
from streamd.config_sections import ClipsSection
from streamd.output_folders import writable_folder
from streamd.privacy import SpeechDetector

log = logging.getLogger(__name__)

SUBTYPE = "PCM_24"
MAX_HOLD_KEPT_S = 60.0  # of [events] hold_s kept too (its end is announced that long after its last hit)
HEADROOM_S = 120.0  # audio kept beyond a clip while results trail it; beyond, clips lose their start
COUNTERS = ("clips_saved", "clip_write_errors", "clips_truncated", "clips_lost", "clips_dropped_speech")
COUNTERS += ("clips_unchecked",)


@dataclass
class PendingClip:
    stream: int
    start: int  # source sample indices
    end: int
    path: Path
    event: dict[str, Any]
    truncated: bool = False  # longer than max_clip_s: its start cut


class ClipRecorder:
    """Cuts and writes event clips; ``tap`` and ``on_event`` are daemon hooks, ``close`` ends it."""

    def __init__(
        self,
        cfg: ClipsSection,
        streams: list[tuple[str, int, int]],
        *,
        lead_s: float = 0.0,
        hold_s: float = 0.0,
    ) -> None:
        """``streams``: (name, sample rate, channels) of each stream, in the daemon's order; ``lead_s``: how
        long before the newest published window's start an event not yet announced may start (``min_hits``
        hops); ``hold_s``: how long an event stays open after its last hit (``[events] hold_s``)."""
        self.cfg = cfg
        self.dir = writable_folder(cfg.dir, "--save-clips")  # a bad folder is an error at start-up
        self.streams = streams
        self.lead_s = lead_s + 1.0  # a second to spare: rounding, a window's own start
        self.clip_s = cfg.pre_roll_s + cfg.max_clip_s + cfg.post_roll_s  # the longest clip
        most = self.clip_s + min(hold_s, MAX_HOLD_KEPT_S) + self.lead_s + HEADROOM_S
        self.history = [AudioHistory(math.ceil(most * rate), ch) for _, rate, ch in streams]
        self.index = {name: i for i, (name, _, _) in enumerate(streams)}
        self.published: list[float | None] = [None] * len(streams)  # the newest published window's start
        self.open: dict[tuple[int, str], float] = {}  # (stream, label) -> t_start of each open event
        self.ended = [False] * len(streams)
        self.pending: list[PendingClip] = []
        self._warned_bytes = False
        # per stream: the COUNTERS (truncated: longer than max_clip_s or its start no longer held)
        self._counts = [Counter[str]() for _ in streams]
        self.speech = (
            SpeechDetector(cfg.speech_threshold, cfg.min_speech_s) if cfg.privacy == "drop_speech" else None
        )
        self._names: set[Path] = set()
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[PendingClip, int, np.ndarray] | None] = queue.Queue()
        self._close_deadline: float | None = None  # set by the first close()
        self._thread = threading.Thread(target=self._run, name="streamd-clips", daemon=True)
        self._thread.start()

    # -- daemon hooks --------------------------------------------------------------------------------

    def tap(self, stream: int, start: int, data: np.ndarray) -> None:
        """Feature thread: keep the block, cut every clip whose post-roll has arrived, forget what no clip
        can need any more."""
        with self._lock:
            self.history[stream].write(start, data)
            self._cut_ready(stream)
            self._forget(stream)

    def __call__(self, msg: dict[str, Any]) -> None:
        """Publisher sink: the newest published window of each stream (how far the results are)."""
        if msg["type"] == "prediction" and (stream := self.index.get(msg["stream"])) is not None:
            with self._lock:
                self.published[stream] = msg["t_start"]

    def on_event(self, stream: int, event: dict[str, Any]) -> dict[str, Any]:
        """Result stage: a ``start`` of a label to save is kept open; its ``end`` gets a clip path (unless
        its audio is gone already: counted) and is queued for cutting."""
        if self.cfg.labels and event["label"] not in self.cfg.labels:
            return event
        key = (stream, event["label"])
        if event["state"] == "start":
            with self._lock:
                self.open[key] = event["t_start"]
            return event
        name, rate, _ = self.streams[stream]
        start = max(0, round((event["t_start"] - self.cfg.pre_roll_s) * rate))
        end = round((event["t_end"] + self.cfg.post_roll_s) * rate)
        truncated = end - start > round(self.clip_s * rate)
        if truncated:  # longer than max_clip_s: its last part
            start = end - round(self.clip_s * rate)
        # named outside the lock (file-system calls must not hold up the feature and publisher threads);
        # only the result stage calls this, so no other name can be taken meanwhile
        path = self._unique(self.dir / clip_name(name, event["wall_time"], event["label"], event["t_start"]))
        with self._lock:
            self.open.pop(key, None)
            history = self.history[stream]
            if history.oldest >= end and history.end >= end:
                self._counts[stream]["clips_lost"] += 1
                log.warning(
                    "event %s at %.2f s: its audio is gone, no clip", event["label"], event["t_start"]
                )
                return event
            event = {**event, "clip": str(path)}
            self.pending.append(PendingClip(stream, start, end, path, event, truncated))
            self._cut_ready(stream)
        return event

    def _forget(self, stream: int) -> None:
        """Drop the audio of ``stream`` that no clip can need: before the newest published window (less the
        lead an unannounced event may have), each open event's start and each clip waiting for its
        post-roll, less the pre-roll."""
        published = self.published[stream]
        if published is None:
            return  # nothing published yet: keep what the history holds
        rate = self.streams[stream][1]
        keep = published - self.lead_s
        for (s, _), t_start in self.open.items():
            if s == stream:  # from its start: a long one is bounded by the history's capacity
                keep = min(keep, t_start)
        first = math.floor((keep - self.cfg.pre_roll_s) * rate)
        for clip in self.pending:
            if clip.stream == stream:
                first = min(first, clip.start)
        self.history[stream].forget_before(first)

    def _unique(self, path: Path) -> Path:
        """``path``, or ``path`` with ``-2``, ``-3``... when this run or an earlier one already used it."""
        candidate, n = path, 2
        while candidate in self._names or candidate.exists():
            candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
            n += 1
        self._names.add(candidate)
        return candidate

    def _cut_ready(self, stream: int) -> None:
        history = self.history[stream]
        keep = []
        for clip in self.pending:
            if clip.stream == stream and (history.end >= clip.end or self.ended[stream]):
                first, data = history.read(clip.start, clip.end)
                if (clip.truncated or first > clip.start) and data.shape[0]:
                    self._counts[stream]["clips_truncated"] += 1
                self._queue.put((clip, first, data))
            else:
                keep.append(clip)
        self.pending = keep

    def close(self, timeout: float = 10.0) -> None:
        """The streams have ended: cut what is pending with the audio there is, write it, stop. Waits at
        most ``timeout`` for the writer; a later call only waits out what is left of that same time."""
        if self._close_deadline is None:
            self._close_deadline = time.monotonic() + timeout
            with self._lock:
                for i in range(len(self.streams)):
                    self.ended[i] = True
                    self._cut_ready(i)
            self._queue.put(None)
        self._thread.join(max(0.0, self._close_deadline - time.monotonic()))

    # -- writer thread -----------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            clip, first, data = item
            try:
                self._write(clip, first, data)
            except Exception as exc:  # disk full, unwritable directory, a codec error: count, go on
                self._count(clip.stream, "clip_write_errors")
                if self.write_errors == 1:
                    log.error("cannot save clip %s (%s); further failures are only counted", clip.path, exc)

    def _write(self, clip: PendingClip, first: int, data: np.ndarray) -> None:
        import soundfile as sf

        from models.atomic_write import write_atomically

        name, rate, _ = self.streams[clip.stream]
        if data.shape[0] == 0:  # the stream ended before the clip's start (an event at its very end)
            self._count(clip.stream, "clips_lost")
            return
        if not self._passes_privacy(clip, data, rate):
            return
        clip.path.parent.mkdir(parents=True, exist_ok=True)
        encoded = io.BytesIO()  # encoded in memory: a full disk is then an OSError that says so
        sf.write(encoded, data, rate, format="FLAC", subtype=SUBTYPE)
        flac = encoded.getvalue()
        sidecar = {
            "event": clip.event,
            "stream": name,
            "sample_rate": rate,
            "channels": int(data.shape[1]),
            "first_sample": first,
            "clip_start_s": first / rate,
            "clip_end_s": (first + data.shape[0]) / rate,
            "pre_roll_s": self.cfg.pre_roll_s,
            "post_roll_s": self.cfg.post_roll_s,
        }
        text = json.dumps(sidecar, indent=2, allow_nan=False)
        write_atomically(clip.path, lambda tmp: tmp.write_bytes(flac))
        try:
            write_atomically(clip.path.with_suffix(".json"), lambda tmp: tmp.write_text(text, "utf-8"))
        except BaseException:
            clip.path.unlink(missing_ok=True)  # no clip without its sidecar (nor one retention cannot see)
            raise
        self._count(clip.stream, "clips_saved")
        too_big = enforce_retention(self.dir, self.cfg, clip.path)
        if too_big and not self._warned_bytes:
            self._warned_bytes = True
            log.warning(
                "clips.max_bytes %d is less than one clip (%d bytes): the newest is kept",
                self.cfg.max_bytes,
                too_big,
            )

    def _passes_privacy(self, clip: PendingClip, data: np.ndarray, rate: int) -> bool:
        """False (counted) for a clip the privacy filter drops or, while it cannot be loaded, cannot check."""
        if self.speech is None:
            return True
        if not self.speech.available():
            self._count(clip.stream, "clips_unchecked")
            return False
        if self.speech.has_speech(data, rate):
            self._count(clip.stream, "clips_dropped_speech")
            log.info("clip %s not saved: it contains speech", clip.path.name)
            return False
        return True

    def _count(self, stream: int, name: str) -> None:
        """Count one for ``stream`` from the writer thread (the hooks count under the same lock)."""
        with self._lock:
            self._counts[stream][name] += 1

    def counters_for(self, stream: int) -> dict[str, int]:
        """The counters of one stream (see ``COUNTERS``)."""
        counts = self._counts[stream]
        return {name: counts[name] for name in COUNTERS}

    @property
    def counters(self) -> dict[str, int]:
        """The counters summed over the streams."""
        return {name: sum(c[name] for c in self._counts) for name in COUNTERS}

    @property
    def saved(self) -> int:
        return self.counters["clips_saved"]

    @property
    def write_errors(self) -> int:
        return self.counters["clip_write_errors"]

    @property
    def truncated(self) -> int:
        return self.counters["clips_truncated"]
