"""The daemon: a thin wiring of the stages, the only module that starts and stops them.

    source (device callback / file reader) -> ring -> [features: downmix, resample, front end]
        -> engine queue -> [engine: model] -> result queue -> [results: top-k, messages, events, latency]
        -> publisher queue -> [publisher: ZMQ PUB + sinks]

Stages (``streamd.stages``) start in the order publisher, results, engine, features, sources and stop in
reverse, each joined with ``JOIN_TIMEOUT_S``; one stop event, set on Ctrl-C / SIGTERM, ends them all at
once (without it, a replay drains: every stage finishes its input first). The main thread runs the
supervisor (``streamd.supervisor``: watchdog, reopen with backoff, periodic status) until the end, or
until a stage fails for good. ``streamd.collect.replay_collect`` runs files through this pipeline too.

Who owns what: ``feature_stage``, ``result_stage``, ``supervisor``, ``status`` (counters and status
messages), ``streams`` (per-stream state); integrations hook in through ``audio_taps``, ``event_hooks``,
``counter_hooks`` and ``finish_hooks`` (see ``streamd.integrations``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import torch

from audio_core.resample import StreamingResampler
from audio_core.windows import ColumnPlan, WindowPlan, checkpoint_window_s, stream_plan
from streamd.catch_up import catch_up_columns, catch_up_fill_s
from streamd.config import DaemonConfig
from streamd.engine import Engine
from streamd.errors import ConfigError
from streamd.events import EventDetector
from streamd.feature_stage import AudioTap, FeatureStage
from streamd.gaps import SegmentedFrontEnd
from streamd.label_check import check_daemon_labels
from streamd.model_loading import LoadedModel
from streamd.model_runner import intra_op_threads, model_threads
from streamd.native_stderr import native_stderr_for
from streamd.result_stage import EventHook, ResultStage
from streamd.sources import Source
from streamd.stages import EngineStage, SourcesStage, Stages
from streamd.status import CounterHook, PublisherLike, Status
from streamd.streams import Stream, unique_stream_names
from streamd.supervisor import Supervisor

JOIN_TIMEOUT_S = 1.0
POLL_S = 0.05
FLUSH_S = 2.0  # at most this long for queued messages to be sent (and forwarded) before the final status
WARM_UP_WAIT_S = 10.0  # at most this long for the engine's warm-up calls before audio starts


class Daemon:
    """Runs ``sources`` through one model and publishes every result."""

    def __init__(
        self, config: DaemonConfig, sources: list[Source], model: LoadedModel, publisher: PublisherLike
    ) -> None:
        if not sources:
            raise ConfigError("no audio sources given")
        self.config = config
        self.model = model
        self.publisher = publisher
        self.labels = list(model.info.labels)
        check_daemon_labels(config, self.labels)
        self.live = any(s.live for s in sources)
        features = model.info.features
        try:  # windows or recurrent columns: chosen here, once
            window_s = config.windows.window_s or checkpoint_window_s(model.info)
            self.plan = stream_plan(features, model.column_frames, window_s, config.windows.hop_s)
        except ValueError as exc:  # the frame-shift rule needs the model's features: checked here, in the
            raise ConfigError(str(exc)) from None  # same words as every other command (one_rule_everywhere)
        names = unique_stream_names([s.name for s in sources])
        self.streams = [
            Stream(
                index=i,
                name=name,
                source=src,
                resampler=StreamingResampler(src.sample_rate, features.sample_rate),
                front=SegmentedFrontEnd(self._stream_plan(i, sources)),
                events=EventDetector(config.events, name),
            )
            for i, (name, src) in enumerate(zip(names, sources, strict=True))
        ]
        self.errors: list[str] = []
        self.warnings: list[str] = []  # e.g. a stage that did not stop in time
        self.audio_taps: list[AudioTap] = []  # see every block of source audio (feature thread)
        self.event_hooks: list[EventHook] = []  # may extend an event message before it is published
        self.counter_hooks: list[CounterHook] = []  # more status counters of a stream
        # run once every stage has stopped, before the final status: work they finish there is counted in it
        self.finish_hooks: list[Callable[[], object]] = []
        self.flush_s = FLUSH_S
        self.native_stderr = native_stderr_for(sources)  # ALSA/PortAudio prints -> the logger
        if self.native_stderr:
            self.counter_hooks.append(self.native_stderr.counters)
        self._stop = threading.Event()  # the one stop event of every stage
        self.policy = config.overload_policy(self.live)
        self.results = ResultStage(
            self.streams,
            publisher,
            model.name,
            self.labels,
            config.publish.top_k,
            self.plan.result_every_s,  # a result is late once the next one is already due
            features.sample_rate,
            self.event_hooks,
        )
        columns = catch_up_columns(model, config.engine.max_batch, config.engine.queue_size, self.policy)
        self.engine = Engine(
            model,
            self.results.submit,
            queue_size=config.queue_size(
                len(sources), self.policy, batch_floor=columns == 1 and not any(s.live for s in sources)
            )
            * columns,
            max_batch=config.engine.max_batch,
            policy=self.policy,
            stream_names=names,
            columns_per_stream=columns,
            fill_s=catch_up_fill_s(columns, any(s.paced for s in sources)),
            threads=model_threads(config.engine.threads, model.device),
        )
        self.results.done_with = self.engine.done_with  # an audio stop whose last window was dropped
        self.status = Status(publisher, self.engine, features.sample_rate, self.counter_hooks)
        self.features = FeatureStage(
            self.streams, self.engine, self.status, self._stop, self.audio_taps, self.errors
        )
        self.supervisor = Supervisor(
            self.streams,
            self.engine,
            self.status,
            config.capture.watchdog_s,
            config.publish.status_interval_s,
        )
        self.stages = Stages(JOIN_TIMEOUT_S)
        self._threads_before = torch.get_num_threads()

    def _stream_plan(self, position: int, sources: list[Source]) -> WindowPlan | ColumnPlan:
        """The plan of one stream: staggered when it is one of several paced windowed streams."""
        stagger = self.config.windows.stagger and len(sources) > 1 and sources[position].paced
        if stagger and isinstance(self.plan, WindowPlan):
            return self.plan.staggered(position, len(sources))
        return self.plan

    # -- lifecycle -------------------------------------------------------------------------------------

    def _start(self, stop_event: threading.Event) -> bool:
        """Start every stage; False (everything stopped, final statuses out) when ``stop_event`` came
        while waiting for a subscriber."""
        self._threads_before = torch.get_num_threads()
        torch.set_num_threads(intra_op_threads(model_threads(self.config.engine.threads, self.model.device)))
        self.publisher.start()  # binds now: a port in use fails before any audio is touched
        try:
            if self.native_stderr:
                self.native_stderr.install()
            waited = self._wait_for_subscriber(stop_event)
        except BaseException:
            self._shutdown("stopped", drain=False)
            raise
        if not waited:  # stopped while waiting: nothing started, final statuses only
            self._shutdown("stopped", drain=False)
            return False
        try:
            self.engine.warm_up(torch.zeros(self.plan.input_frames, self.model.info.features.num_mel_bins))
            self.stages.start(self.results)
            self.stages.start(EngineStage(self.engine))
            self.engine.warmed.wait(WARM_UP_WAIT_S)  # the model is warm before any audio comes in
            self.status.started = time.monotonic()
            for stream in self.streams:
                self.status.publish(stream, "starting", self.start_message(stream))
            self.stages.start(self.features)
            self.stages.start(SourcesStage([s.source for s in self.streams]))
            self.supervisor.begin()
        except BaseException:
            self._shutdown("stopped", drain=False)
            raise
        return True

    def _wait_for_subscriber(self, stop_event: threading.Event) -> bool:
        """``[publish] wait_for_subscriber_s``: up to that long for a subscriber, in short slices so that a
        stop (Ctrl-C, SIGTERM) is honoured at once; False when stopped meanwhile."""
        wait_s = self.config.publish.wait_for_subscriber_s
        if wait_s <= 0 or not hasattr(self.publisher, "wait_for_subscriber"):
            return not stop_event.is_set()
        deadline = time.monotonic() + wait_s
        while not stop_event.is_set() and not self._failed():
            left = deadline - time.monotonic()
            if left <= 0 or self.publisher.wait_for_subscriber(min(POLL_S, left)):
                return True
        return False

    def start_message(self, stream: Stream) -> str:
        src = stream.source
        origin = getattr(src, "display", "")  # a file's path: streams of files with one stem differ by it
        rates = f"{src.sample_rate} Hz x{src.channels} -> {self.model.info.features.sample_rate} Hz mono"
        return (
            (f"{origin}: " if origin else "") + f"{rates}; "
            f"model {self.model.name} on {self.model.device.type} "
            f"({self.model.precision}, {self.model.precision_reason}); {stream.front.plan.describe()}; "
            f"overload policy {self.policy}, queue {self.engine.queue.maxsize}, "
            f"batch <= {self.engine.max_batch}"
        ) + (f"; {note}" if (note := getattr(self.publisher, "loss_note", "")) else "")

    def _pipeline_done(self) -> bool:
        """True once the results of every window are out; closes the result stage after the engine."""
        if self.results.failure:
            return True
        if not self.results.closed and self.engine.join(timeout=0):
            self.results.close()
        return self.results.join(POLL_S)

    def run_until_done(self, stop_event: threading.Event | None = None) -> None:
        """Replay: run until every source has ended and its last results are out (or ``stop_event``).
        A ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM outside ``stop_on_signals``) shuts the pipeline down
        as a stop does, then goes on to the caller: what it collected is not complete."""
        stop_event = stop_event or threading.Event()
        if not self._start(stop_event):
            return
        interrupted = keyboard = False
        try:
            while not self._pipeline_done():
                if stop_event.is_set() or self._failed():
                    interrupted = True
                    break
                self.supervisor.tick()
        except KeyboardInterrupt:
            interrupted = keyboard = True
        complete = {s.index for s in self.streams if self.supervisor.complete(s)} if interrupted else set()
        state = "stopped" if interrupted else "finished"
        self._shutdown(state, drain=not interrupted, complete=complete, asked=interrupted)
        if keyboard:
            raise KeyboardInterrupt

    def _failed(self) -> str | None:
        """What failed for good: the result stage, or the publisher (a proxy refusing its handshake)."""
        return self.results.failure or getattr(self.publisher, "failure", None)

    def run_forever(self, stop_event: threading.Event) -> None:
        """Live: run until ``stop_event`` is set (Ctrl-C / SIGTERM); stops within about a second."""
        if not self._start(stop_event):
            return
        try:
            while not stop_event.wait(POLL_S):
                self.supervisor.tick()
                if self._failed() or (self.engine.join(timeout=0) and not self.features.alive):
                    break  # every source ended (e.g. a replayed file) or a stage failed
        except KeyboardInterrupt:
            stop_event.set()
        self._shutdown("stopped", drain=False, asked=stop_event.is_set())

    def _shutdown(
        self, final_state: str, *, drain: bool, complete: set[int] | None = None, asked: bool = False
    ) -> None:
        """Stop every stage in reverse order of start (each join bounded), then say goodbye.

        Without ``drain`` (Ctrl-C, SIGTERM) nothing more is classified: no tail window, queued windows are
        dropped and counted. With it (the sources ended) every stage has already finished its work. The
        streams in ``complete`` (indices) had ended with every result out: their final state is
        ``finished`` whatever ``final_state`` says. ``asked``: a stop signal ended the run; a live input
        then being reopened after an error is a warning, not a failure of the run.
        """
        if not drain:
            self._stop.set()  # every stage's thread sees it; the engine's queue is told at once:
            self.engine.abandon()  # blocked producers are freed and queued windows dropped (counted)
        self.warnings += self.stages.stop_all()
        self.errors += self._run_failures()
        # every message so far sent and handed to the sinks: the final status counts all before it
        self.publisher.flush(timeout=self.flush_s)
        for finish in self.finish_hooks:
            try:
                finish()
            except Exception as exc:  # the final status and the publisher's stop must still happen
                self.warnings.append(f"an integration failed to finish: {exc}")
        for stream in self.streams:
            state = "finished" if stream.index in (complete or ()) else final_state
            note = stream.source.error
            if note and asked and stream.source.live:  # the watchdog was reopening it: the user stopped
                note = f"stopped while the input was unavailable ({note})"
                self.warnings.append(f"{stream.name}: {note}")
            elif note:
                state = "device_error"
                self.errors.append(note)
            self.status.publish(stream, state, note)
        self.publisher.stop(timeout=1.0)
        if (late := self._failed()) and late not in self.errors:  # a refusal seen only as it stopped
            self.errors.append(late)
        torch.set_num_threads(self._threads_before)
        if self.native_stderr:
            self.native_stderr.restore()

    def _run_failures(self) -> list[str]:
        """What makes the run a failure besides a source error: a stage stopped, or no window classified."""
        out = [f for f in (self.engine.failure, self._failed()) if f]
        if self.engine.model_errors and not sum(self.engine.windows.values()):  # none classified
            out.append(f"the model failed on every window ({self.engine.last_error})")
        return out

    def counters(self, stream: Stream) -> dict[str, int | float]:
        """Every status counter of ``stream`` (see ``streamd.messages.STATUS_COUNTERS``)."""
        return self.status.counters(stream)
