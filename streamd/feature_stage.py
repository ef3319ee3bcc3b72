"""The feature stage (its own thread): ring -> downmix -> resample -> front end -> engine queue.

Each pass reads what every stream's ring holds, shows it to the audio taps (integrations such as event
clips), replaces non-finite samples by silence (counted), and turns it into windows or recurrent columns
(``audio_core.front_end``, one per stretch between device outages: ``streamd.gaps``, whose lost
intervals are announced once); each is submitted to the engine with the time its last real sample reached
the ring (for latency). When the supervisor declares a source away, the stage marks where its audio
stopped (``AudioStop``: the stream time heard, the last window submitted) once it has read what the ring
held at that moment, for the result stage to end the open events there; the front end is left as it is
(audio that resumes with no gap goes on in the same windows, as offline). At a stream's end the front
end pads and flushes (not when a stop, Ctrl-C or SIGTERM, ended it: the stopped engine would only count
such a window as dropped), and its end is such a stop too (its events end with its audio, not the run's).
Under the ``block`` policy it takes no more audio than the engine has room for. When every stream has
ended, or the stop event is set, it closes the engine's input.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from audio_core.audio_file import none_left_message
from audio_core.resample import downmix
from audio_core.windows import ColumnPlan, Window
from streamd.engine import Engine
from streamd.job_queue import Job
from streamd.stages import ThreadStage
from streamd.status import Status
from streamd.streams import AudioStop, Stream

# (stream index, first sample's stream-time index at the source rate, source-rate audio)
AudioTap = Callable[[int, int, np.ndarray], None]


class FeatureStage(ThreadStage):
    """Feeds the engine from the streams' rings."""

    name = "features"

    def __init__(
        self,
        streams: list[Stream],
        engine: Engine,
        status: Status,
        stop_event: threading.Event,
        audio_taps: list[AudioTap],
        errors: list[str],
    ) -> None:
        super().__init__()
        self.streams = streams
        self.engine = engine
        self.status = status
        self.stop_event = stop_event
        self.audio_taps = audio_taps  # shared with the daemon: integrations append to it
        self.errors = errors
        self.data = threading.Event()  # set by the rings on every write
        for stream in streams:
            stream.source.ring.on_write = self.data.set

    # -- stage -----------------------------------------------------------------------------------------

    def stop(self) -> None:
        self.data.set()  # wake it: it ends at once if the stop event is set, else once the streams end

    # -- work ------------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self.stop_event.is_set():
                if self.engine.queue.policy == "block" and not self.engine.queue.wait_for_room(0.05):
                    continue  # take no more audio than the engine can use now
                self.data.clear()
                busy = False
                for stream in self.streams:
                    if not stream.finished:
                        busy |= self.pump(stream)
                if all(s.finished for s in self.streams):
                    break
                if not busy:
                    self.data.wait(0.05)
        except Exception as exc:  # a bug must end the run visibly, not hang it
            self.errors.append(f"feature stage failed: {type(exc).__name__}: {exc}")
            self.engine.abandon()
        finally:
            self.engine.close()

    def pump(self, stream: Stream) -> bool:
        """Move what the ring holds through the stream's front end into the engine; True if it did work."""
        ring = stream.source.ring
        count, upto = stream.away  # declared away: read what it had sent by then, then mark the stop
        stopping = count != stream.away_seen
        got = ring.read(max(0, upto - ring.read_index) if stopping else None)
        windows: list[Window] = []
        if got.data.shape[0]:
            gaps = stream.source.take_gaps()
            if self.audio_taps:  # taps see source audio at its stream time (outages skipped)
                for at, piece in stream.timeline.place(got.start, got.data, gaps):
                    for tap in self.audio_taps:
                        tap(stream.index, at, piece)
            mono = downmix(got.data)
            if not np.isfinite(mono).all():  # a device gone wrong: silence instead, counted
                bad = ~np.isfinite(mono)
                stream.nonfinite_samples += int(bad.sum())
                mono = np.where(bad, np.float32(0.0), mono)
            src = stream.source
            windows = stream.front.accept_chunk(
                got.start, mono, stream.resampler.process, gaps, src.sample_rate
            )
            for interval in stream.front.take_intervals():  # a device outage: say so, once
                self.status.publish_gap(stream, interval)
        ended = ring.exhausted()
        if ended:
            windows += stream.front.accept(stream.resampler.process(np.zeros(0, np.float32), last=True))
            self._check_some_left(stream)
        if ended and not self.stop_event.is_set():  # a stop (Ctrl-C, SIGTERM) ends a stream without its
            windows += stream.front.finish()  # end: no tail or padded window, which the stopped engine
            if stream.front.short_padding_s > 0:  # would only count as dropped
                self._note_padding(stream)
            if stream.front.tail_s > 0:
                self._note_tail(stream)
        for window in windows:
            self.engine.submit(Job(stream.index, window, self._ready_time(stream, window)))
            stream.submitted_windows += 1
        marked = stopping and ring.read_index >= upto
        if marked:
            stream.away_seen = count
            heard_s = stream.front.samples / stream.front.rate
            stream.audio_stops.append(AudioStop(heard_s, stream.submitted_windows - 1))
        if ended and not stream.finished:  # its open events end with its audio, not with the whole run's
            heard_s = stream.front.samples / stream.front.rate
            stream.audio_stops.append(AudioStop(heard_s, stream.submitted_windows - 1))
        stream.finished = ended
        return got.data.shape[0] > 0 or ended or marked

    @staticmethod
    def _check_some_left(stream: Stream) -> None:
        """A stream that ended with samples read but none left at the model rate (e.g. one sample at
        44.1 kHz) failed like ``classify`` says it fails: its source's error, so the run exits non-zero."""
        resampler, source = stream.resampler, stream.source
        if resampler.samples_in and not resampler.samples_out and source.error is None:
            where = getattr(source, "display", stream.name)
            source.error = none_left_message(
                where, resampler.samples_in, resampler.in_rate, resampler.out_rate
            )

    def _note_padding(self, stream: Stream) -> None:
        """Say so in a status message when a stream shorter than one window (or, for a recurrent model,
        one step) was padded with silence."""
        real = stream.front.samples / stream.front.rate
        pad = stream.front.short_padding_s
        unit = "one step" if isinstance(stream.front.plan, ColumnPlan) else "one window"
        note = f"audio shorter than {unit} ({real:.5g} s): padded with {pad:.5g} s of silence"
        self.status.publish(stream, "running", note)

    def _note_tail(self, stream: Stream) -> None:
        """Say so in a status message when audio after the last whole recurrent step went unclassified."""
        step = stream.front.plan.result_every_s
        note = (
            f"{stream.front.tail_s:.3f} s of audio after the last whole {step:g}-s step (of the stream, and "
            "of each stretch before an outage) not classified: a step of it padded with silence would be "
            "mostly silence"
        )
        self.status.publish(stream, "running", note)

    @staticmethod
    def _ready_time(stream: Stream, window: Window) -> float:
        """When the window's last real sample was written to the ring (native-rate index)."""
        ring = stream.source.ring
        index = min(stream.resampler.input_index(window.end_sample) - 1, ring.write_index - 1)
        written = ring.time_of(max(index, 0))
        return time.monotonic() if written is None else written
