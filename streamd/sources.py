"""Audio sources: a live input device (sounddevice) or a file replayed through the same ring.

A source fills its ``SampleRing`` at its native rate and channel count; everything after the ring
(downmix, resampling, features) is the same for both. The device callback only copies into the ring.
A file is read in chunks with soundfile and paced to real time (``speed`` 1.0), to any multiple of it,
or as fast as the consumer asks for more (``speed=None``: ``--speed max``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from dataclasses import dataclass
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
)
from streamd.errors import AudioInputError
from streamd.ring import SampleRing

MAX_DEVICE_CHANNELS = 2  # capture at most this many channels; they are averaged anyway
MIN_GAP_S = 0.1  # after a reopen, audio this much later than the clock says is a gap (an outage)


def _sounddevice() -> Any:
    """Import sounddevice lazily: without the PortAudio library it raises OSError at import."""
    try:
        import sounddevice
    except OSError as exc:
        raise AudioInputError(f"cannot use audio devices: the PortAudio library is missing ({exc})") from None
    return sounddevice


# -- devices --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    """An input device as PortAudio lists it."""

    index: int
    name: str
    channels: int
    default_samplerate: float
    hostapi: str
    is_default: bool


def list_input_devices() -> list[DeviceInfo]:
    """Every device with input channels; empty when PortAudio sees none."""
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default_in = sd.default.device[0]
    except sd.PortAudioError as exc:
        raise AudioInputError(f"cannot query audio devices: {exc}") from None
    out = []
    for dev in devices:
        if dev["max_input_channels"] <= 0:
            continue
        out.append(
            DeviceInfo(
                index=int(dev["index"]),
                name=str(dev["name"]),
                channels=int(dev["max_input_channels"]),
                default_samplerate=float(dev["default_samplerate"]),
                hostapi=str(hostapis[dev["hostapi"]]["name"]),
                is_default=int(dev["index"]) == default_in,
            )
        )
    return out


def _device_list_text(devices: list[DeviceInfo]) -> str:
    return "; ".join(f"{d.index}: {d.name}" for d in devices) or "none"


def resolve_input_device(spec: str | int) -> DeviceInfo:
    """``mic``/``default`` (the default input), an index, or a case-insensitive name substring."""
    text = str(spec).strip()
    if not text:
        raise AudioInputError("--device: empty device name; use 'mic', a device index or part of its name")
    devices = list_input_devices()
    if not devices:
        raise AudioInputError("no audio input device found (PortAudio lists none)")
    if text.lower() in ("mic", "default"):
        default = [d for d in devices if d.is_default]
        if not default:
            raise AudioInputError(
                f"no default input device; choose one with --device: {_device_list_text(devices)}"
            )
        return default[0]
    if text.lstrip("-").isdigit():
        for dev in devices:
            if dev.index == int(text):
                return dev
        raise AudioInputError(
            f"no input device with index {text}; input devices: {_device_list_text(devices)}"
        )
    exact = [d for d in devices if d.name.lower() == text.lower()]
    matches = exact or [d for d in devices if text.lower() in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise AudioInputError(
            f"no input device matches {text!r}; input devices: {_device_list_text(devices)}"
        )
    raise AudioInputError(f"{text!r} matches several input devices: {_device_list_text(matches)}")


# -- sources ---------------------------------------------------------------------------------------------


class Source:
    """What the daemon needs from a source: a name, a native rate, a ring, start/stop."""

    name: str
    sample_rate: int
    channels: int
    ring: SampleRing
    live: bool = False
    pipe: bool = False  # a non-seekable input: the watchdog reports a stalled writer
    error: str | None = None  # set when the source failed (file read error, device gone)
    device_overflows = 0  # input overflows the device itself reported
    restarts = 0

    def start(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` for the source's reader thread (``_thread``), if it has one."""
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def restart(self) -> None:
        """Reopen a live input after an error or a stall (files do not restart)."""

    def take_gaps(self) -> list[tuple[int, int]]:
        """Outages seen since the last call: ``(ring index where audio resumed, native samples lost)``."""
        return []


class FileSource(Source):
    """Replays a file (any rate, any channels) into its ring, paced to ``speed`` × real time or flat out."""

    def __init__(
        self,
        path: str | Path,
        *,
        speed: float | None = 1.0,
        block_s: float = 0.02,
        max_block_s: float = 0.5,
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
        except AudioInputError as exc:
            self.error = str(exc)
        except Exception as exc:  # libsndfile errors mid-file: report, end the stream
            self.error = f"{self.display}: read error ({type(exc).__name__}: {exc})"
        finally:
            self.ring.close()

    def _pump(self, handle: Any) -> None:
        started = time.monotonic()
        written = 0
        block = np.empty((self.block, self.channels), dtype=np.float32)
        while not self._stop.is_set():
            n = read_frames(handle, self.path, self.block, out=block).shape[0]
            if n == 0:
                return
            end = written + n
            if self.speed is not None:
                delay = started + end / self.sample_rate / self.speed - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
            elif not self._wait_for_demand():
                return
            check_finite(self.path, block[:n], written, self.sample_rate)
            self.ring.write(block[:n])
            written = end

    def _wait_for_demand(self) -> bool:
        """Flat out, but on demand: write the next chunk once the consumer has taken everything and come
        back for more, so no chunk waits in the ring while the engine is busy (latency stays honest)."""
        while not (self.ring.available() == 0 and self.ring.empty_reads > self._empty_reads_seen):
            self._space.clear()
            if self.ring.available() == 0 and self.ring.empty_reads > self._empty_reads_seen:
                break
            self._space.wait(0.1)
            if self._stop.is_set():
                return False
        self._empty_reads_seen = self.ring.empty_reads
        return True


class DeviceSource(Source):
    """Live capture from a PortAudio input device at its native rate (up to two channels)."""

    live = True

    def __init__(
        self,
        device: str | int = "mic",
        *,
        block_s: float = 0.02,
        ring_s: float = 10.0,
        name: str | None = None,
    ) -> None:
        self.device = resolve_input_device(device)
        self.name = name or ("mic" if str(device).lower() in ("mic", "default") else self.device.name)
        self.sample_rate = round(self.device.default_samplerate)
        self.channels = min(self.device.channels, MAX_DEVICE_CHANNELS)
        self.block = max(1, round(block_s * self.sample_rate))
        self.ring = SampleRing(round(ring_s * self.sample_rate), self.channels)
        self._stream: Any = None
        self._stopping = False
        self.callbacks = 0
        self.restarts = 0
        self.device_overflows = 0
        self._last_block_at: float | None = None  # monotonic time of the last block's arrival
        self._reopened = False  # the next block is the first after a reopen
        self._gaps: deque[tuple[int, int]] = deque()

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # Runs in PortAudio's thread: copy into the ring (and note an outage's length) and nothing else.
        now = time.monotonic()
        if status.input_overflow:
            self.device_overflows += 1
        if self._reopened:
            self._reopened = False
            self._note_gap(now, frames)
        self.ring.write(indata, now)
        self._last_block_at = now
        self.callbacks += 1

    def _note_gap(self, now: float, frames: int) -> None:
        """The first block after a reopen arrived ``late_s`` after the last block's audio would have been
        followed by it: that much audio was never captured (the device was gone or silent)."""
        if self._last_block_at is None:
            return
        late_s = now - self._last_block_at - frames / self.sample_rate
        if late_s >= MIN_GAP_S:
            self._gaps.append((self.ring.write_index, round(late_s * self.sample_rate)))

    def take_gaps(self) -> list[tuple[int, int]]:
        out = []
        while self._gaps:
            out.append(self._gaps.popleft())
        return out

    def _finished(self) -> None:
        if not self._stopping:
            self.error = f"input device {self.device.name!r} stopped unexpectedly"

    def start(self) -> None:
        sd = _sounddevice()
        self._stopping = False
        try:
            self._stream = sd.InputStream(
                device=self.device.index,
                samplerate=self.sample_rate,
                channels=self.channels,
                dtype="float32",
                blocksize=self.block,
                callback=self._callback,
                finished_callback=self._finished,
            )
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            self._stream = None
            raise AudioInputError(f"cannot open input device {self.device.name!r}: {exc}") from None
        self.error = None

    def stop(self) -> None:
        """Abort (never waits for pending buffers: a stalled device must not hang us) and close."""
        self._stopping = True
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.abort()
            with contextlib.suppress(Exception):
                stream.close()
        self.ring.close()

    def restart(self) -> None:
        """Reopen the device after an error or a stall; the sample index (stream time) continues."""
        self._stopping = True
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.abort()
                stream.close()
        self.restarts += 1
        self._reopened = True
        try:
            self.start()
        except AudioInputError as exc:
            self.error = str(exc)
