"""A file (or a pipe) replayed into a ring through the same path as live capture.

The file is read in chunks with soundfile and paced to real time (``speed`` 1.0), to any multiple of it,
or as fast as the consumer asks for more (``speed=None``: ``--speed max``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from audio_core.audio_file import (
    PIPE_WAIT_S,
    STDIN,
    AudioFileInfo,
    audio_info,
    check_finite,
    display_path,
    open_audio,
    read_frames,
    unread_note,
)
from audio_core.shortfall import opening_shortfall, shortfall_after_read
from streamd.config_sections import MAX_SPEED_BLOCK_S
from streamd.errors import AudioInputError
from streamd.ring import SampleRing
from streamd.sources import Source


class FileSource(Source):
    """Replays a file (any rate, any channels) into its ring, paced to ``speed`` × real time or flat out."""

    def __init__(
        self,
        path: str | Path,
        *,
        speed: float | None = 1.0,
        block_s: float = 0.02,
        max_block_s: float = MAX_SPEED_BLOCK_S,
        ring_s: float = 10.0,
        name: str | None = None,
        wait_s: float = PIPE_WAIT_S,
    ) -> None:
        if speed is not None and not speed > 0:
            raise AudioInputError(f"--speed must be positive or 'max', got {speed}")
        self._handle: Any = open_audio(path, wait_s=wait_s)  # the one open; read by the thread
        try:
            self.info: AudioFileInfo = audio_info(self._handle, path)
        except AudioInputError:
            self._handle.close()
            raise
        self.path = Path(path)
        self.display = display_path(path)
        self.pipe = not self.info.seekable  # a stalled writer is reported, never reopened
        self.name = name or ("stdin" if str(path) == STDIN else self.path.stem)
        self.sample_rate = self.info.sample_rate
        self.channels = self.info.channels
        self.speed = speed
        block = block_s if speed is not None else max_block_s
        self.block = max(1, round(block * self.sample_rate))
        paced_capacity = round(ring_s * self.sample_rate) if speed is not None else 0  # flat out: on demand
        self.ring = SampleRing(max(paced_capacity, 2 * self.block), self.channels)
        self._space = threading.Event()
        self.ring.on_read = self._space.set
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._empty_reads_seen = 0
        self._written = 0  # frames of the file put into the ring

    def known_failure(self) -> str | None:
        """The run's failure known on opening: a file shorter than its header says (truncated), or one whose
        decoder stops before its end."""
        return opening_shortfall(self.info)

    @property
    def paced(self) -> bool:
        """Paced to real time (or a multiple of it); ``--speed max`` is not."""
        return self.speed is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"streamd-file-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._space.set()

    def _run(self) -> None:
        try:
            with self._handle as handle:
                self._pump(handle)
        except AudioInputError as exc:  # a read error mid-file among them: say how much was lost
            self.error = f"{exc}{self._unread()}"
        except Exception as exc:  # anything else libsndfile raises: report, end the stream
            self.error = f"{self.display}: read error ({type(exc).__name__}: {exc}){self._unread()}"
        finally:
            self.ring.close()

    def _unread(self) -> str:
        """``; its last N s were not classified`` after a failure, when the file's length is known."""
        return unread_note(self.info.frames, self._written, self.sample_rate)

    def _pump(self, handle: Any) -> None:
        started = time.monotonic()
        block = np.empty((self.block, self.channels), dtype=np.float32)
        while not self._stop.is_set():
            n = read_frames(handle, self.path, self.block, out=block).shape[0]
            if n == 0:
                if self._written == 0:  # a pipe's length is known only now; a file's was checked on opening
                    raise AudioInputError(f"{self.display}: contains no audio samples")
                # its audio went through whole; the rest was never there (a pipe's is known only now)
                if (shortfall := shortfall_after_read(handle, self.info, self._written)) is not None:
                    raise AudioInputError(shortfall)
                return
            end = self._written + n
            if self.speed is not None:
                delay = started + end / self.sample_rate / self.speed - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                # a file is never lost: behind the pace (a blocking engine holds the reader), it waits
                if not self._wait_until(lambda n=n: self.ring.free() >= n):
                    return
            elif not self._wait_for_demand():
                return
            check_finite(self.path, block[:n], self._written, self.sample_rate)
            self.ring.write(block[:n])
            self._written = end

    def _wait_until(self, ready: Callable[[], bool]) -> bool:
        """Wait until ``ready()`` (re-checked whenever the consumer reads); False when stopped first."""
        while not ready():
            self._space.clear()
            if ready():
                break
            self._space.wait(0.1)
            if self._stop.is_set():
                return False
        return True

    def _wait_for_demand(self) -> bool:
        """Flat out, but on demand: write the next chunk once the consumer has taken everything and come
        back for more, so no chunk waits in the ring while the engine is busy (latency stays honest)."""
        ring = self.ring
        if not self._wait_until(lambda: ring.available() == 0 and ring.empty_reads > self._empty_reads_seen):
            return False
        self._empty_reads_seen = ring.empty_reads
        return True
