"""Event clips (``--save-clips DIR``, ``[clips]``): the source audio of each ended event, saved as FLAC.

The daemon hands this module every block of source audio (at the source's rate and channel count, before
downmixing) and every event message. Each stream keeps the last ``pre_roll_s + max_clip_s + post_roll_s``
seconds in a ring of its own. An event's ``end`` message gains ``clip`` (the path the clip will have) at
once; the clip itself, ``[t_start - pre_roll_s, t_end + post_roll_s]`` at the source rate, is cut once
the post-roll has arrived (or the stream has ended) and written by a thread of its own: FLAC (24-bit)
written atomically, then a JSON sidecar (the event message, stream, times, rate); if the sidecar cannot
be written the FLAC is removed again. Retention (max files, bytes, age) is enforced after each write,
over streamd's own clips only (``is_own_clip``: its name pattern with a sidecar beside it). A write that
fails (disk full, unwritable directory) is counted and logged once; the daemon goes on. With
``privacy = "drop_speech"`` a clip in which the voice-activity detector (``streamd.privacy``) finds
speech is not written but counted (``clips_dropped_speech``); while the detector cannot be loaded, clips
are not written either (fail closed) and counted as ``clips_unchecked``. Counters are kept per stream
(``counters_for``) and in total (``counters``).
"""

from __future__ import annotations

import io
import json
import logging
import math
import queue
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamd.audio_history import AudioHistory
from streamd.config_sections import ClipsSection
from streamd.output_folders import writable_folder
from streamd.privacy import SpeechDetector

log = logging.getLogger(__name__)

SUBTYPE = "PCM_24"
COUNTERS = (
    "clips_saved",
    "clip_write_errors",
    "clips_truncated",
    "clips_dropped_speech",
    "clips_unchecked",
)


CLIP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*_\d{8}T\d{6}_[A-Za-z0-9_-]+_\d+\.\d{2}s(-\d+)?\.flac$")


def clip_name(stream: str, wall_time: float, label: str, t_start: float) -> str:
    """The file name of an event's clip: stream, local wall-clock time, label, offset in the stream."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(wall_time))
    return f"{stream}_{stamp}_{re.sub(r'[^A-Za-z0-9_-]+', '_', label)}_{t_start:.2f}s.flac"


def is_own_clip(path: Path) -> bool:
    """A clip streamd wrote: its name is a ``clip_name`` (``-N`` added when taken) and its JSON sidecar
    is beside it. Retention deletes only these, never a user's own recordings in the same folder."""
    return bool(CLIP_NAME.match(path.name)) and path.with_suffix(".json").is_file()


@dataclass
class PendingClip:
    stream: int
    start: int  # source sample indices
    end: int
    path: Path
    event: dict[str, Any]


class ClipRecorder:
    """Cuts and writes event clips; ``tap`` and ``on_event`` are daemon hooks, ``close`` ends it."""

    def __init__(self, cfg: ClipsSection, streams: list[tuple[str, int, int]]) -> None:
        """``streams``: (name, sample rate, channels) of each stream, in the daemon's order."""
        self.cfg = cfg
        self.dir = writable_folder(cfg.dir, "--save-clips")  # a bad folder is an error at start-up
        self.streams = streams
        hold_s = cfg.pre_roll_s + cfg.max_clip_s + cfg.post_roll_s
        self.history = [AudioHistory(math.ceil(hold_s * rate), ch) for _, rate, ch in streams]
        self.ended = [False] * len(streams)
        self.pending: list[PendingClip] = []
        # per stream: clips_saved, clip_write_errors, clips_truncated (an event longer than max_clip_s lost
        # its start), clips_dropped_speech, clips_unchecked (see the module docstring)
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
        """Feature thread: keep the block, then cut every clip whose post-roll has arrived."""
        with self._lock:
            self.history[stream].write(start, data)
            self._cut_ready(stream)

    def on_event(self, stream: int, event: dict[str, Any]) -> dict[str, Any]:
        """Engine thread: an ``end`` of a label to save gets a clip path and is queued for cutting."""
        if event["state"] != "end" or (self.cfg.labels and event["label"] not in self.cfg.labels):
            return event
        name, rate, _ = self.streams[stream]
        start = max(0, round((event["t_start"] - self.cfg.pre_roll_s) * rate))
        end = round((event["t_end"] + self.cfg.post_roll_s) * rate)
        path = self._unique(self.dir / clip_name(name, event["wall_time"], event["label"], event["t_start"]))
        event = {**event, "clip": str(path)}
        with self._lock:
            self.pending.append(PendingClip(stream, start, end, path, event))
            self._cut_ready(stream)
        return event

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
                if first > clip.start:
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
                self._counts[clip.stream]["clip_write_errors"] += 1
                if self.write_errors == 1:
                    log.error("cannot save clip %s (%s); further failures are only counted", clip.path, exc)

    def _write(self, clip: PendingClip, first: int, data: np.ndarray) -> None:
        import soundfile as sf

        from models.atomic_write import write_atomically

        name, rate, _ = self.streams[clip.stream]
        if data.shape[0] == 0 or not self._passes_privacy(clip, data, rate):
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
        self._counts[clip.stream]["clips_saved"] += 1
        self._enforce_retention()

    def _passes_privacy(self, clip: PendingClip, data: np.ndarray, rate: int) -> bool:
        """False (counted) for a clip the privacy filter drops or, while it cannot be loaded, cannot check."""
        if self.speech is None:
            return True
        if not self.speech.available():
            self._counts[clip.stream]["clips_unchecked"] += 1
            return False
        if self.speech.has_speech(data, rate):
            self._counts[clip.stream]["clips_dropped_speech"] += 1
            log.info("clip %s not saved: it contains speech", clip.path.name)
            return False
        return True

    def _enforce_retention(self) -> None:
        """Delete the oldest clips (and their sidecars) beyond max files, max bytes or max age; only clips
        that streamd wrote (``is_own_clip``) count and are deleted."""
        cfg = self.cfg
        if not (cfg.max_files or cfg.max_bytes or cfg.max_age_s):
            return
        clips = []
        for path in self.dir.glob("*.flac"):
            if not is_own_clip(path):  # files of anyone else in the folder are never touched
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            clips.append((st.st_mtime, path.name, path, st.st_size))
        clips.sort()
        total = sum(size for *_, size in clips)
        now = time.time()
        for i, (mtime, _, path, size) in enumerate(clips):
            remaining = len(clips) - i
            too_many = bool(cfg.max_files) and remaining > cfg.max_files
            too_big = bool(cfg.max_bytes) and total > cfg.max_bytes
            too_old = bool(cfg.max_age_s) and now - mtime > cfg.max_age_s
            if not (too_many or too_big or too_old):
                continue
            path.unlink(missing_ok=True)
            path.with_suffix(".json").unlink(missing_ok=True)
            total -= size

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
