"""The daemon: the only module that wires the stages together and owns their threads.

    source (device callback / file reader) -> ring -> [feature thread: downmix, resample, fbank, windows]
        -> engine queue -> [engine thread: model] -> results -> publisher queue -> [publisher thread: ZMQ]

Stages start in that order and stop in reverse, each joined with a timeout; one stop event ends it all.
The main thread supervises: status messages every ``status_interval_s``, the live watchdog, and the end.
``replay_collect`` runs files through the very same pipeline at full speed and returns every message.
"""

from __future__ import annotations

import copy
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from audio_core.resample import StreamingResampler, downmix
from audio_core.windows import ColumnPlan, Window, WindowPlan, checkpoint_window_s
from streamd import messages
from streamd.config import DaemonConfig, with_windows
from streamd.engine import Engine, Job, catch_up_queue_factor, model_threads
from streamd.errors import ConfigError, StreamdError
from streamd.events import EventConfig, EventDetector
from streamd.gaps import SegmentedFrontEnd, gap_status
from streamd.input_watch import pipe_stall
from streamd.label_check import check_event_labels
from streamd.model_loading import LoadedModel, load_model
from streamd.sources import FileSource, Source

JOIN_TIMEOUT_S = 1.0
RETRY_FIRST_S = 0.25  # first wait between reopen attempts of a failed device (then doubling)
LATENCY_HISTORY = 4096

AudioTap = Callable[[int, int, np.ndarray], None]  # (stream index, first sample index, source-rate audio)
EventHook = Callable[[int, dict[str, Any]], dict[str, Any]]  # (stream index, event) -> event to publish
CounterHook = Callable[[int], dict[str, int | float]]  # stream index -> extra status counters


class PublisherLike(Protocol):
    """What the daemon needs from ``streamd.publisher.Publisher``."""

    def start(self) -> None: ...
    def publish(self, msg: dict[str, Any]) -> None: ...
    def stop(self, timeout: float = 1.0) -> None: ...
    @property
    def counters(self) -> dict[str, int]: ...


@dataclass
class Stream:
    """Per-stream state of the feature stage and the stream's own counters."""

    index: int
    name: str
    source: Source
    resampler: StreamingResampler
    front: SegmentedFrontEnd  # one FeatureFrontEnd per stretch of audio between device outages
    events: EventDetector
    finished: bool = False
    late_results: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_HISTORY))
    status_t: float = 0.0  # stream time of the last status message
    dropped_seen: int = 0  # dropped windows at the last status message
    last_write: tuple[int, float] = (0, 0.0)  # (ring write index, monotonic time) for the watchdog
    alarm: str | None = None  # "stalled" / "device_error" while the watchdog is handling it
    retry_at: float = 0.0  # monotonic time of the next reopen attempt
    retry_delay_s: float = 0.0  # wait before the attempt after that (doubles, capped)
    nonfinite_samples: int = 0  # NaN / inf samples from the source, replaced by silence


def unique_stream_names(names: Sequence[str]) -> list[str]:
    """Valid, distinct stream names (``a``, ``a-2``, ...)."""
    out: list[str] = []
    for raw in names:
        base = messages.stream_name(raw)
        name, n = base, 2
        while name in out:
            name = f"{base[: messages.MAX_STREAM_CHARS - 4]}-{n}"
            n += 1
        out.append(name)
    return out


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else 0.0


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
        check_event_labels(config.events, self.labels)
        self.live = any(s.live for s in sources)
        features = model.info.features
        try:
            self.plan: WindowPlan | ColumnPlan = (
                ColumnPlan(model.column_frames, features)
                if model.recurrent
                else WindowPlan.from_seconds(
                    config.windows.window_s or checkpoint_window_s(model.info), config.windows.hop_s, features
                )
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        # A result is late once the next one is already due: one hop, or one column of frames.
        if isinstance(self.plan, ColumnPlan):
            self.late_after_s = self.plan.column_frames * features.frame_shift / features.sample_rate
        else:
            self.late_after_s = config.windows.hop_s
        names = unique_stream_names([s.name for s in sources])
        self.streams = [
            self._stream(i, name, src) for i, (name, src) in enumerate(zip(names, sources, strict=True))
        ]
        self.policy = config.overload_policy(self.live)
        self.engine = Engine(
            model,
            self._on_results,
            queue_size=config.queue_size(len(sources), self.policy)
            * catch_up_queue_factor(model, config.engine.max_batch, config.engine.queue_size),
            max_batch=config.engine.max_batch,
            policy=self.policy,
            stream_names=names,
        )
        self._stop = threading.Event()  # the one stop event of every stage
        self._data = threading.Event()  # set by the rings on every write
        self._feature_thread: threading.Thread | None = None
        self._threads_before = torch.get_num_threads()
        self._started = 0.0
        self.errors: list[str] = []
        self.audio_taps: list[AudioTap] = []  # see every block of source audio (feature thread)
        self.event_hooks: list[EventHook] = []  # may extend an event message before it is published
        self.counter_hooks: list[CounterHook] = []  # more status counters of a stream

    def _stream(self, index: int, name: str, source: Source) -> Stream:
        source.ring.on_write = self._data_ready
        return Stream(
            index=index,
            name=name,
            source=source,
            resampler=StreamingResampler(source.sample_rate, self.model.info.features.sample_rate),
            front=SegmentedFrontEnd(self.plan),
            events=EventDetector(self.config.events, name),
        )

    def _data_ready(self) -> None:
        self._data.set()

    # -- lifecycle -------------------------------------------------------------------------------------

    def _start(self) -> None:
        self._threads_before = torch.get_num_threads()
        torch.set_num_threads(model_threads(self.config.engine.threads, self.model.device))
        self.publisher.start()  # binds now: a port in use fails before any audio is touched
        try:
            wait_s = self.config.publish.wait_for_subscriber_s
            if wait_s > 0 and hasattr(self.publisher, "wait_for_subscriber"):
                self.publisher.wait_for_subscriber(wait_s)
            span = (
                self.plan.frames_per_window if isinstance(self.plan, WindowPlan) else self.plan.column_frames
            )
            self.engine.warm_up(torch.zeros(span, self.model.info.features.num_mel_bins))
            self.engine.start()
            self._feature_thread = threading.Thread(
                target=self._feature_loop, name="streamd-features", daemon=True
            )
            self._started = time.monotonic()
            for stream in self.streams:
                self._publish_status(stream, "starting", self._start_message(stream))
            self._feature_thread.start()
            for stream in self.streams:
                stream.source.start()
                stream.last_write = (0, time.monotonic())
        except BaseException:
            self._shutdown("stopped", drain=False)
            raise

    def _start_message(self, stream: Stream) -> str:
        src = stream.source
        what = (
            f"recurrent, {self.model.column_frames} frames per step"
            if isinstance(self.plan, ColumnPlan)
            else f"window {self.plan.window_s:g} s, hop {self.plan.hop_s:g} s"
        )
        return (
            f"{src.sample_rate} Hz x{src.channels} -> {self.model.info.features.sample_rate} Hz mono; "
            f"model {self.model.name} on {self.model.device.type} "
            f"({self.model.precision}, {self.model.precision_reason}); {what}; "
            f"overload policy {self.policy}, queue {self.engine.queue.maxsize}, "
            f"batch <= {self.engine.max_batch}"
        ) + (f"; {note}" if (note := getattr(self.publisher, "loss_note", "")) else "")

    def run_until_done(self, stop_event: threading.Event | None = None) -> None:
        """Replay: run until every source has ended and its last results are out (or ``stop_event``)."""
        self._start()
        stop_event = stop_event or threading.Event()
        interrupted = False
        next_status = time.monotonic() + self.config.publish.status_interval_s
        try:
            while self.engine.join(timeout=0.05) is False:
                if stop_event.is_set():
                    interrupted = True
                    break
                next_status = self._supervise(next_status)
        except KeyboardInterrupt:
            interrupted = True
        self._shutdown("stopped" if interrupted else "finished", drain=not interrupted)

    def run_forever(self, stop_event: threading.Event) -> None:
        """Live: run until ``stop_event`` is set (Ctrl-C / SIGTERM); stops within about a second."""
        self._start()
        next_status = time.monotonic() + self.config.publish.status_interval_s
        try:
            while not stop_event.wait(0.05):
                next_status = self._supervise(next_status)
                if self.engine.join(timeout=0) and not self._feature_thread_alive():
                    break  # every source ended (e.g. a replayed file) or a stage failed
        except KeyboardInterrupt:
            pass
        self._shutdown("stopped", drain=False)

    def _feature_thread_alive(self) -> bool:
        return self._feature_thread is not None and self._feature_thread.is_alive()

    def _shutdown(self, final_state: str, *, drain: bool) -> None:
        """Signal every stage, join them in reverse order of start (bounded), then say goodbye.

        Without ``drain`` (Ctrl-C, SIGTERM) nothing more is classified: no tail window, queued windows are
        dropped and counted. With it (the sources ended) every stage has already finished its work.
        """
        if not drain:
            self._stop.set()
            self._data.set()
            self.engine.abandon()
        for stream in self.streams:
            stream.source.stop()
        for stream in self.streams:
            stream.source.join(JOIN_TIMEOUT_S)
        if self._feature_thread is not None:
            self._feature_thread.join(JOIN_TIMEOUT_S)  # when draining, both have already finished
        self.engine.close()
        self.engine.join(JOIN_TIMEOUT_S)
        self.errors += self._run_failures()
        for stream in self.streams:
            t_end = stream.front.samples / self.model.info.features.sample_rate
            for msg in stream.events.flush(t_end):
                self.publisher.publish(self._hooked(stream, msg))
            state = final_state
            if stream.source.error:
                state = "device_error"
                self.errors.append(stream.source.error)
            self._publish_status(stream, state, stream.source.error)
        self.publisher.stop(timeout=1.0)
        torch.set_num_threads(self._threads_before)

    def _run_failures(self) -> list[str]:
        """What makes the run a failure besides a source error: a stopped engine, or no window classified."""
        out = [self.engine.failure] if self.engine.failure else []
        classified = sum(self.engine.windows.values())
        if self.engine.model_errors and not classified:
            out.append(f"the model failed on every window ({self.engine.last_error})")
        return out

    # -- feature stage (its own thread) ----------------------------------------------------------------

    def _feature_loop(self) -> None:
        try:
            while not self._stop.is_set():
                if self.policy == "block" and not self.engine.queue.wait_for_room(0.05):
                    continue  # take no more audio than the engine can use now
                self._data.clear()
                busy = False
                for stream in self.streams:
                    if not stream.finished:
                        busy |= self._pump(stream)
                if all(s.finished for s in self.streams):
                    break
                if not busy:
                    self._data.wait(0.05)
        except Exception as exc:  # a bug must end the run visibly, not hang it
            self.errors.append(f"feature stage failed: {type(exc).__name__}: {exc}")
            self.engine.abandon()
        finally:
            self.engine.close()

    def _pump(self, stream: Stream) -> bool:
        """Move what the ring holds through the stream's front end into the engine; True if it did work."""
        ring = stream.source.ring
        got = ring.read()
        windows: list[Window] = []
        if got.data.shape[0]:
            for tap in self.audio_taps:
                tap(stream.index, got.start, got.data)
            mono = downmix(got.data)
            if not np.isfinite(mono).all():  # a device gone wrong: silence instead, counted
                bad = ~np.isfinite(mono)
                stream.nonfinite_samples += int(bad.sum())
                mono = np.where(bad, np.float32(0.0), mono)
            src = stream.source
            windows = stream.front.accept_chunk(
                got.start, mono, stream.resampler.process, src.take_gaps(), src.sample_rate
            )
            for interval in stream.front.take_intervals():  # a device outage: say so, once
                self.publisher.publish(gap_status(stream.name, interval, self.counters(stream)))
        ended = ring.exhausted()
        if ended:
            windows += stream.front.accept(stream.resampler.process(np.zeros(0, np.float32), last=True))
            windows += stream.front.finish()
            self._note_padding(stream, windows)
        for window in windows:
            self.engine.submit(Job(stream.index, window, self._ready_time(stream, window)))
        stream.finished = ended
        return got.data.shape[0] > 0 or ended

    def _note_padding(self, stream: Stream, windows: list[Window]) -> None:
        """Say so in a status message when a stream shorter than one window was padded with silence."""
        for window in windows:
            if window.padded_s > 0 and isinstance(self.plan, WindowPlan):
                real = window.end_sample / self.model.info.features.sample_rate
                pad = window.padded_s
                note = f"audio shorter than one window ({real:.3f} s): padded with {pad:.3f} s of silence"
                self._publish_status(stream, "running", note)

    def _ready_time(self, stream: Stream, window: Window) -> float:
        """When the window's last real sample was written to the ring (native-rate index)."""
        ring = stream.source.ring
        index = min(stream.resampler.input_index(window.end_sample) - 1, ring.write_index - 1)
        written = ring.time_of(max(index, 0))
        return time.monotonic() if written is None else written

    # -- results (engine thread) -----------------------------------------------------------------------

    def _on_results(self, jobs: list[Job], scores: torch.Tensor) -> None:
        k = min(self.config.publish.top_k, len(self.labels))
        top_scores, top_index = torch.topk(scores, k, dim=1)
        all_scores = scores.tolist()
        for job, values, indices, row in zip(
            jobs, top_scores.tolist(), top_index.tolist(), all_scores, strict=True
        ):
            stream = self.streams[job.stream]
            window = job.window
            wall = time.time()
            latency_ms = max(0.0, (time.monotonic() - job.ready_time) * 1000.0)
            msg = messages.prediction(
                stream.name,
                window.t_start,
                window.t_end,
                self.model.name,
                [(self.labels[i], v) for i, v in zip(indices, values, strict=True)],
                latency_ms,
                level_dbfs=window.level_dbfs,
                window_index=window.index,
                wall_time=wall,
            )
            self.publisher.publish(msg)
            stream.latencies_ms.append(latency_ms)
            if latency_ms > 1000.0 * self.late_after_s:
                stream.late_results += 1
            scores_by_label = dict(zip(self.labels, row, strict=True))
            for event in stream.events.update(window.t_start, window.t_end, scores_by_label, wall_time=wall):
                self.publisher.publish(self._hooked(stream, event))

    def _hooked(self, stream: Stream, event: dict[str, Any]) -> dict[str, Any]:
        for hook in self.event_hooks:
            event = hook(stream.index, event)
        return event

    # -- supervision (main thread) ---------------------------------------------------------------------

    def _supervise(self, next_status: float) -> float:
        now = time.monotonic()
        for stream in self.streams:
            if stream.source.live:
                self._watch(stream, now)
            elif stream.source.pipe and (note := pipe_stall(stream, now, self.config.capture.watchdog_s)):
                self._publish_status(stream, "stalled", note)
        if now < next_status:
            return next_status
        for stream in self.streams:
            dropped = self.engine.counters(stream.index)["dropped_windows"]
            state = stream.alarm or ("overloaded" if dropped > stream.dropped_seen else "running")
            if state in ("running", "overloaded") and stream.source.error:
                state = "device_error"  # the source has failed: never "running" with its error
            stream.dropped_seen = dropped
            self._publish_status(stream, state, stream.source.error)
        return now + self.config.publish.status_interval_s

    def _watch(self, stream: Stream, now: float) -> None:
        """Live watchdog. A device error: report and reopen at once, then retry with a doubling wait
        (``RETRY_FIRST_S``, capped at ``max(1 s, watchdog_s)``). No samples for ``watchdog_s``: report
        "stalled" and reopen. Either alarm clears when samples flow again."""
        source = stream.source
        written = source.ring.write_index
        if written != stream.last_write[0]:
            stream.last_write = (written, now)
            stream.alarm = None
            stream.retry_delay_s = 0.0
            return
        watchdog_s = self.config.capture.watchdog_s
        if source.error:
            if stream.alarm == "device_error" and now < stream.retry_at:
                return
            first = stream.alarm != "device_error"
            stream.alarm = "device_error"
            stream.retry_delay_s = (
                RETRY_FIRST_S if first else min(2 * stream.retry_delay_s, max(1.0, watchdog_s))
            )
            stream.retry_at = now + stream.retry_delay_s
            self._publish_status(stream, "device_error", f"{source.error}; reopening the device")
        elif now - stream.last_write[1] >= watchdog_s:
            stream.alarm = "stalled"
            quiet = now - stream.last_write[1]
            self._publish_status(stream, "stalled", f"no audio for {quiet:.1f} s; reopening the device")
        else:
            return
        source.restart()
        stream.last_write = (written, now)  # give the reopened device a full watchdog period

    def counters(self, stream: Stream) -> dict[str, int | float]:
        """Every status counter of ``stream`` (see ``streamd.messages.STATUS_COUNTERS``)."""
        ring = stream.source.ring
        rate = self.model.info.features.sample_rate
        wall = max(time.monotonic() - self._started, 1e-9) if self._started else 0.0
        audio_s = stream.front.samples / rate
        latencies = list(stream.latencies_ms)
        pub = self.publisher.counters
        extra: dict[str, int | float] = {}
        for hook in self.counter_hooks:
            extra.update(hook(stream.index))
        return {
            **extra,
            **self.engine.counters(stream.index),
            "samples": stream.front.samples,
            "overruns": ring.overruns + stream.source.device_overflows,
            "rtf": audio_s / wall if wall else 0.0,
            "late_results": stream.late_results,
            "published": pub.get("published", 0),
            "publish_dropped": pub.get("publish_dropped", 0),
            "restarts": stream.source.restarts,
            "lost_samples": ring.lost_samples,
            "nonfinite_samples": stream.nonfinite_samples,
            "batches": self.engine.batches,
            "latency_p50_ms": _percentile(latencies, 50),
            "latency_p99_ms": _percentile(latencies, 99),
            **stream.front.counters(),  # real samples, and the stream time lost to device outages
        }

    def _publish_status(self, stream: Stream, state: str, message: str | None = None) -> None:
        t_end = stream.front.samples / self.model.info.features.sample_rate
        t_start = min(stream.status_t, t_end)
        stream.status_t = t_end
        text = None if message is None else message[: messages.MAX_STATUS_MESSAGE_CHARS]
        self.publisher.publish(
            messages.status(stream.name, t_start, t_end, self.counters(stream), state, message=text)
        )


# -- programmatic replay ---------------------------------------------------------------------------------


class _SinkOnlyPublisher:
    """A ``Publisher`` on a private inproc endpoint whose only reader is a list (no TCP port needed)."""

    def __init__(self) -> None:
        from streamd.publisher import Publisher

        self.messages: list[dict[str, Any]] = []
        self._publisher = Publisher(f"inproc://streamd-collect-{uuid.uuid4().hex}", queue_size=1_000_000)
        self._publisher.add_sink(self.messages.append)

    def start(self) -> None:
        self._publisher.start()

    def publish(self, msg: dict[str, Any]) -> None:
        self._publisher.publish(msg)

    def stop(self, timeout: float = 1.0) -> None:
        self._publisher.stop(timeout=max(timeout, 30.0))  # everything queued must reach the list

    @property
    def counters(self) -> dict[str, int]:
        return self._publisher.counters


def replay_collect(
    paths: Sequence[str | Path],
    model: str | Path | LoadedModel,
    window_s: float | None = None,
    hop_s: float = 1.0,
    *,
    top_k: int = 5,
    events: EventConfig | None = None,
    compute: str = "cpu",
    precision: str = "fp32",
    config: DaemonConfig | None = None,
) -> list[dict[str, Any]]:
    """Replay files through the whole pipeline at full speed and return every message, in publish order.

    ``model`` is a checkpoint path or an already loaded model; ``window_s`` None: the checkpoint's window.
    Use ``top_k=len(labels)`` for all scores.
    Raises ``StreamdError`` if a file cannot be read or a message was lost.
    """
    cfg = with_windows(copy.deepcopy(config) if config else DaemonConfig(), window_s, hop_s)
    cfg.publish.top_k = top_k
    if events is not None:
        cfg.events = events
    loaded = (
        model if isinstance(model, LoadedModel) else load_model(model, compute=compute, precision=precision)
    )
    sources: list[Source] = [
        FileSource(p, speed=None, block_s=cfg.capture.block_s, max_block_s=cfg.capture.max_block_s)
        for p in paths
    ]
    publisher = _SinkOnlyPublisher()
    daemon = Daemon(cfg, sources, loaded, publisher)
    daemon.run_until_done()
    lost = publisher.counters.get("publish_dropped", 0)
    if daemon.errors:
        raise StreamdError("; ".join(daemon.errors))
    if lost:
        raise StreamdError(f"{lost} messages were dropped by the publisher")
    return publisher.messages


def print_errors(errors: Sequence[str]) -> None:
    """One line per error on stderr (what a command shows after a run)."""
    for error in errors:
        print(f"streamd: error: {error}", file=sys.stderr)
