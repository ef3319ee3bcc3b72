"""Network audio sources: ``--device URL`` (rtsp://, http(s)://, tcp://, udp://, anything FFmpeg opens).

PyAV (FFmpeg) opens the URL and decodes its first audio track; a thread of the source writes the decoded
samples (float32, at most two channels, at the stream's own rate) into the source's ``SampleRing``, kept
in step with the wall clock by ``streamd.stream_clock`` (a server sending faster than real time does not
overrun the ring; one sending only the present is not read late). A gap of up to ``SHORT_GAP_S`` in the
frames' timestamps (packets lost in transit) is filled with silence (``filled_samples``); a longer one is
an outage, as is the time away until a reconnect begins (what the server sends from then on is read).
From the ring on everything is the device pipeline: the daemon downmixes and resamples.

A source that fails (cannot connect, connection lost, stream ended) sets ``error``; a source that stalls
trips the daemon's watchdog. Either way the daemon reports it and calls ``restart`` with its doubling
backoff, exactly as for a device. After a reconnect the time the stream was away is reported as a gap
(``take_gaps``, as the device source does), so the daemon marks it and stream time keeps step with wall
time; it is recorded in ``outages`` as ``(start_s, end_s)`` of stream time (``outage_samples`` counts
them). If the server comes back at another rate, the project's resampler
brings it to the first rate. PyAV is imported only when a URL is given.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np

from audio_core.audio_file import format_problem
from audio_core.resample import StreamingResampler, downmix
from streamd.errors import AudioInputError
from streamd.held_interrupts import call_interruptibly
from streamd.network_url import check_url, import_av, short_url, timed_out
from streamd.ring import SampleRing
from streamd.sources import Source
from streamd.stream_clock import BACKLOG_RING_S, StreamClock

log = logging.getLogger(__name__)

OPEN_TIMEOUT_S = 5.0
MAX_BAD_PACKETS = 50  # undecodable packets in a row that end a connection
SHORT_GAP_S = 0.5  # lost packets' time up to this is filled with silence; longer is an outage
# Look at little of a live stream before starting (FFmpeg's defaults read seconds of it first).
PROBE_OPTIONS = {"probesize": "32768", "analyzeduration": "500000"}


class NetworkSource(Source):
    """A live source reading a URL through PyAV (see the module docstring)."""

    live = True
    device_overflows = 0

    def __init__(
        self,
        url: str,
        *,
        block_s: float = 0.02,
        ring_s: float = 10.0,
        watchdog_s: float = 3.0,
        name: str | None = None,
    ) -> None:
        check_url(url)
        self.url = url
        self.read_timeout_s = max(0.5, watchdog_s)
        self.name = name or re.sub(r"^[a-z0-9+.\-]+://", "", short_url(url), flags=re.I)
        self._first: Any = None
        self.sample_rate, self.channels = self._probe()
        self.clock = StreamClock(self.sample_rate)  # stream time 0: the connection just made
        self.block = max(1, round(block_s * self.sample_rate))
        self.ring = SampleRing(round(max(ring_s, BACKLOG_RING_S) * self.sample_rate), self.channels)
        self.error: str | None = None
        self.restarts = 0
        self.outages: list[tuple[float, float]] = []
        self.outage_samples = 0
        self._gaps: deque[tuple[int, int]] = deque()
        self._stop = threading.Event()
        self._reopen = threading.Event()
        self._thread: threading.Thread | None = None

    # -- connection ------------------------------------------------------------------------------------

    def _open(self) -> Any:
        av = import_av()
        try:
            return av.open(self.url, options=PROBE_OPTIONS, timeout=(OPEN_TIMEOUT_S, self.read_timeout_s))
        except (av.error.FFmpegError, OSError) as exc:
            why = timed_out(exc, OPEN_TIMEOUT_S, "no audio stream recognised") or exc.strerror or exc
            raise AudioInputError(f"cannot open {short_url(self.url)}: {why}") from None

    def _probe(self) -> tuple[int, int]:
        """``_probe_connection`` in a thread of its own while this one waits where Ctrl-C reaches it:
        inside FFmpeg's open (up to ``OPEN_TIMEOUT_S``) an interrupt was only seen once the open gave up,
        and then reported as the stream's failure."""
        return call_interruptibly(self._probe_connection, f"streamd-probe-{self.name}")

    def _probe_connection(self) -> tuple[int, int]:
        """The first audio track's rate and channels (at most two); AudioInputError if there is none.
        The connection stays open for the reader thread (a live server may serve one client at a time)."""
        container = self._open()
        try:
            if not container.streams.audio:
                raise AudioInputError(f"{short_url(self.url)} has no audio track")
            ctx = container.streams.audio[0].codec_context
            rate, channels = int(ctx.sample_rate or 0), int(ctx.layout.nb_channels or 0)
            if problem := format_problem(rate, channels):
                raise AudioInputError(f"{short_url(self.url)}: {problem}")
        except BaseException:
            container.close()
            raise
        self._first = container
        return rate, min(channels, 2)

    # -- Source interface --------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"streamd-net-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._reopen.set()
        if self._thread is None and self._first is not None:
            self._first.close()
            self._first = None

    def restart(self) -> None:
        """Reconnect (called by the daemon's watchdog, with its backoff); the connecting is done by the
        source's thread, so this never blocks. ``restarts`` counts the attempts it makes: requests made
        while one is under way are answered by it."""
        self._reopen.set()

    # -- reader thread -----------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            attempts = 0
            while not self._stop.is_set():
                self._reopen.clear()
                self.restarts, attempts = attempts, attempts + 1  # every attempt after the first
                probed = self._first is not None  # the connection made before the model loaded
                # a reconnect's outage is the time away until this attempt: what the server sends from
                # now on (FFmpeg's probe waits for it and buffers it) is read, not lost; the handshake's
                # own round trips before the server sends (ms on a LAN) go uncounted
                away = 0 if probed else self.clock.missing(self._position())
                try:
                    container, self._first = self._first or self._open(), None
                except AudioInputError as exc:
                    self.error = str(exc)
                    self._reopen.wait()
                    continue
                self._reopen.clear()  # a request made while we were connecting is answered
                try:
                    self._connected(container, away)
                except Exception as exc:  # FFmpeg read errors, timeouts, a decoder giving up
                    why = timed_out(exc, self.read_timeout_s, "no data") or f"{type(exc).__name__}: {exc}"
                    self.error = f"{short_url(self.url)}: connection lost ({why})"
                finally:
                    container.close()
                self._reopen.wait()
        finally:
            self.ring.close()

    def _connected(self, container: Any, away: int) -> None:
        av = import_av()
        if not container.streams.audio:
            raise AudioInputError("the stream has no audio track any more")
        layout = "mono" if self.channels == 1 else "stereo"
        converter = av.AudioResampler(format="flt", layout=layout)  # sample format and layout only
        rate_fix: StreamingResampler | None = None
        first = True
        expected: float | None = None  # where the next frame should start (seconds of its own timestamps)
        for frame, waited in self._frames(container):
            if self._stop.is_set() or self._reopen.is_set():
                return
            duration = frame.samples / frame.sample_rate
            if first:
                first = False
                self._add_gap(away)  # the outage before this connection (none after the first probe)
                self.error = None
                if frame.sample_rate != self.sample_rate:
                    rate_fix = StreamingResampler(frame.sample_rate, self.sample_rate)
            self.clock.frame(self._position(), duration, waited)
            if frame.pts is not None and frame.time_base is not None:
                start = float(frame.pts * frame.time_base)
                lost = 0.0 if expected is None else start - expected  # packets lost in transit
                if 0.5 * duration <= lost <= SHORT_GAP_S:  # less: timestamps' rounding, nothing lost
                    silence = np.zeros((round(lost * frame.sample_rate), self.channels), np.float32)
                    self._emit(silence, rate_fix)
                    self.filled_samples += round(lost * self.sample_rate)
                elif SHORT_GAP_S < lost <= self.read_timeout_s:  # an outage (beyond: a discontinuity)
                    self._add_gap(round(lost * self.sample_rate))
                expected = start + duration
            for out in converter.resample(frame):
                self._emit(out.to_ndarray().reshape(-1, self.channels), rate_fix)
        if rate_fix is not None:  # what its filter holds ends this connection's audio
            self._emit(np.zeros((0, self.channels), np.float32), rate_fix, last=True)
        if not self._stop.is_set() and not self._reopen.is_set():
            self.error = f"{short_url(self.url)}: the stream ended"

    def _frames(self, container: Any) -> Iterator[tuple[Any, float]]:
        """The decoded audio frames of ``container``, each with the seconds its packet was waited for; a
        packet the decoder rejects (corrupt, or cut by packets lost in transit) is skipped and counted in
        ``decode_errors``, unless every packet of the last ``MAX_BAD_PACKETS`` was: then the stream is
        broken and the connection is dropped."""
        av = import_av()
        bad = 0
        packets = container.demux(container.streams.audio[0])
        while True:
            asked = time.monotonic()
            packet = next(packets, None)
            if packet is None:
                return
            waited = time.monotonic() - asked
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                self.decode_errors += 1
                bad += 1
                if self.decode_errors == 1:
                    log.warning(
                        "%s: a packet could not be decoded (skipped; further ones counted)", self.name
                    )
                if bad >= MAX_BAD_PACKETS:
                    raise
                continue
            bad = 0
            for frame in frames:
                yield frame, waited
                waited = 0.0

    def _emit(self, data: np.ndarray, rate_fix: StreamingResampler | None, last: bool = False) -> None:
        """Write decoded frames ``(n, channels)``, brought to the first connection's rate if need be."""
        if rate_fix is not None:
            mono = rate_fix.process(downmix(data), last=last)
            data = np.repeat(mono[:, None], self.channels, axis=1)
        self._write(np.ascontiguousarray(data, dtype=np.float32))

    def _position(self) -> int:
        """Stream time so far, in samples: what was written and the outages."""
        return self.ring.write_index + self.outage_samples

    def _write(self, data: np.ndarray) -> None:
        """Write, once the stream is no further ahead of the wall clock than the clock allows."""
        wait = self.clock.wait_s(self._position())
        if wait > 0:
            self._stop.wait(wait)
        self.ring.write(data)

    def _add_gap(self, missing: int) -> None:
        """``missing`` samples lost here (ignored up to a block): a gap for the daemon, recorded in
        ``outages`` as ``(start_s, end_s)`` of stream time, the one rule of every live source: the daemon
        advances the stream clock by it and starts fresh features after it (``take_gaps``)."""
        if missing <= self.block:
            return
        stream_index = self._position()
        self._gaps.append((self.ring.write_index, missing))
        self.outage_samples += missing
        span = (stream_index / self.sample_rate, (stream_index + missing) / self.sample_rate)
        self.outages.append(span)
        log.warning("%s: outage %.2f-%.2f s (stream time) marked as a gap", self.name, *span)

    def take_gaps(self) -> list[tuple[int, int]]:
        """Outages since the last call: ``(ring index where audio resumed, native samples lost)``."""
        out = []
        while self._gaps:
            out.append(self._gaps.popleft())
        return out
