"""A PulseAudio virtual microphone for the live tests, and a feeder that plays audio into it.

``start_virtual_mic(directory)`` runs ``scripts/virtual_mic.sh start`` for a private PulseAudio daemon
whose default source reads a FIFO; a child process given ``mic.env`` sees it through PortAudio as the
``pulse`` and ``default`` input devices. ``FifoFeeder`` writes mono audio into that FIFO as s16le at
real-time pace (the pipe source has no clock of its own: no writes, no audio). It survives the daemon
being killed and restarted: it reopens the new FIFO and goes on at the wall-clock position.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from support.paths import VIRTUAL_MIC_SCRIPT

SCRIPT_TIMEOUT_S = 30.0
DEFAULT_RATE = 16000


class VirtualMicUnavailable(RuntimeError):
    """PulseAudio (or the pipe source) cannot be started on this machine; the message says why."""


@dataclass
class VirtualMic:
    """A PulseAudio daemon with a FIFO-fed default source ``vmic``, in its own runtime directory."""

    directory: Path
    rate: int = DEFAULT_RATE
    owned: bool = True  # started here, so stopped here

    @property
    def fifo(self) -> Path:
        return self.directory / "vmic.fifo"

    @property
    def env(self) -> dict[str, str]:
        """Environment for a child process (PortAudio's ALSA pulse plugin) to use this daemon."""
        return {
            "XDG_RUNTIME_DIR": str(self.directory),
            "PULSE_SERVER": f"unix:{self.directory / 'pulse' / 'native'}",
        }

    def _script(self, command: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env.update(
            STREAMD_VMIC_DIR=str(self.directory),
            STREAMD_VMIC_FIFO=str(self.fifo),
            STREAMD_VMIC_RATE=str(self.rate),
        )
        try:
            return subprocess.run(
                ["bash", str(VIRTUAL_MIC_SCRIPT), command],
                env=env,
                capture_output=True,
                text=True,
                timeout=SCRIPT_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise VirtualMicUnavailable(f"virtual_mic.sh {command} failed: {exc}") from None

    def start(self) -> None:
        """Start the daemon (or reuse it when it already runs); VirtualMicUnavailable if it cannot."""
        done = self._script("start")
        if done.returncode != 0:
            raise VirtualMicUnavailable(
                done.stderr.strip() or f"virtual_mic.sh start exited {done.returncode}"
            )

    def stop(self) -> None:
        self._script("stop")

    def running(self) -> bool:
        return self._script("status").returncode == 0

    def pid(self) -> int | None:
        try:
            return int((self.directory / "pulse" / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def kill(self, timeout: float = 5.0) -> None:
        """End the daemon abruptly (SIGKILL), as a device that vanishes; waits until it is gone."""
        pid = self.pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running():
            time.sleep(0.05)

    def feed(self, audio: np.ndarray, **kwargs: object) -> FifoFeeder:
        """Start feeding ``audio`` (float mono at ``self.rate``) into the FIFO; see ``FifoFeeder``."""
        return FifoFeeder(self.fifo, audio, self.rate, **kwargs).start()  # type: ignore[arg-type]


def start_virtual_mic(directory: Path, rate: int = DEFAULT_RATE) -> VirtualMic:
    """Start a private virtual microphone in ``directory`` (keep the path short: it holds a socket)."""
    mic = VirtualMic(directory, rate)
    mic.start()
    return mic


def to_s16le(audio: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as little-endian 16-bit PCM bytes (clipped)."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


class FifoFeeder:
    """Writes ``audio`` into a pipe-source FIFO at real-time pace from a thread.

    After the audio, it goes on writing silence (``then_silence``) so that the device keeps delivering
    until the test stops it. ``pause()`` stops all writes (the source then delivers nothing: a stalled
    device); ``resume()`` goes on where it was. If the FIFO disappears (PulseAudio killed) the feeder
    waits for a new one and continues at the wall-clock position; the audio it could not write then is
    counted in ``skipped``.
    """

    def __init__(
        self,
        fifo: Path,
        audio: np.ndarray,
        rate: int,
        *,
        block_s: float = 0.02,
        then_silence: bool = True,
    ) -> None:
        self.fifo = Path(fifo)
        self.audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        self.rate = rate
        self.block = max(1, round(block_s * rate))
        self.then_silence = then_silence
        self.written = 0  # samples of ``audio`` written
        self.silence_written = 0
        self.skipped = 0  # samples of ``audio`` that fell into an outage
        self.reopens = 0
        self.audio_done = threading.Event()
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._paused_s = 0.0
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # -- control -----------------------------------------------------------------------------------------

    def start(self) -> FifoFeeder:
        self._thread = threading.Thread(target=self._run, name="test-fifo-feeder", daemon=True)
        self._thread.start()
        return self

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._running.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> FifoFeeder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the thread --------------------------------------------------------------------------------------

    def _open(self) -> int | None:
        """A non-blocking write end of the FIFO, waiting while it is missing or has no reader."""
        while not self._stop.is_set():
            try:
                return os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENXIO):
                    raise
            self._stop.wait(0.02)
        return None

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._stop.is_set():
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                self._stop.wait(0.005)

    def _run(self) -> None:
        try:
            self._feed()
        except BaseException as exc:  # reported to the test through ``error``
            self.error = exc

    def _feed(self) -> None:
        fd = self._open()
        if fd is None:
            return
        started = time.monotonic()
        position = 0  # samples of the stream (audio then silence) written or skipped
        try:
            while not self._stop.is_set():
                if not self._running.is_set():
                    paused_at = time.monotonic()
                    self._running.wait()
                    self._paused_s += time.monotonic() - paused_at
                due = round((time.monotonic() - started - self._paused_s) * self.rate)
                if due < position + self.block:
                    self._stop.wait((position + self.block - due) / self.rate)
                    continue
                chunk = self._chunk(position, self.block)
                if chunk is None:
                    return
                try:
                    self._write_all(fd, to_s16le(chunk))
                except BrokenPipeError:
                    os.close(fd)
                    fd = self._reopen(started, position)
                    if fd is None:
                        return
                    position = max(position, round((time.monotonic() - started - self._paused_s) * self.rate))
                    continue
                self._count(position, len(chunk))
                position += len(chunk)
        finally:
            if fd is not None:
                os.close(fd)

    def _reopen(self, started: float, position: int) -> int | None:
        fd = self._open()
        if fd is None:
            return None
        self.reopens += 1
        now = round((time.monotonic() - started - self._paused_s) * self.rate)
        lost_audio = max(0, min(now, len(self.audio)) - min(position, len(self.audio)))
        self.skipped += lost_audio
        return fd

    def _chunk(self, position: int, n: int) -> np.ndarray | None:
        if position < len(self.audio):
            return self.audio[position : position + n]
        self.audio_done.set()
        if not self.then_silence:
            return None
        return np.zeros(n, dtype=np.float32)

    def _count(self, position: int, n: int) -> None:
        real = max(0, min(n, len(self.audio) - position))
        self.written += real
        self.silence_written += n - real
        if position + n >= len(self.audio):
            self.audio_done.set()
