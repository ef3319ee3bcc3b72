"""Inference engine: one worker thread owns the model and classifies the windows that are ready, batched.

Windows from every stream share one bounded ``JobQueue`` (``streamd.job_queue``; its overload policy
decides what happens when it is full). Every discarded window is counted, per stream. A recurrent model
gets one column per stream per model call, with each stream's state kept here and stacked along the batch.
The model itself is run by ``streamd.model_runner.ModelRunner``, the part without threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import torch

from audio_core.scoring import State
from streamd.job_queue import Job, JobQueue
from streamd.model_loading import LoadedModel
from streamd.model_runner import ModelRunner, intra_op_threads
from streamd.split_scoring import SplitScorer

log = logging.getLogger(__name__)

WARM_UP_CALLS = 3  # model calls before the first window (Engine.warm_up)


ResultCallback = Callable[[list[Job], torch.Tensor], None]


class Engine:
    """The worker thread: pulls batches from the queue, runs the model, hands ``(jobs, scores)`` on."""

    def __init__(
        self,
        loaded: LoadedModel,
        on_results: ResultCallback,
        *,
        queue_size: int = 16,
        max_batch: int = 8,
        policy: str = "drop_oldest",
        stream_names: list[str] | None = None,
        columns_per_stream: int = 1,
        threads: int = 0,
        fill_s: float = 0.0,
    ) -> None:
        self.runner = ModelRunner(loaded)
        self.threads = threads  # model workers (streamd.model_runner.model_threads); 0: torch's setting
        cpu = loaded.device.type == "cpu"
        workers = threads if cpu and not loaded.recurrent else 1
        self._split = SplitScorer(self.runner.score_windows, workers, per_window=cpu)
        self.recurrent = loaded.recurrent
        self.on_results = on_results
        self.stream_names = list(stream_names or [])
        self.max_batch = max(1, max_batch)
        self.take = self.max_batch * max(1, columns_per_stream)  # jobs per queue read (catch-up: columns)
        self.fill_s = fill_s  # once a job is queued, how long to wait for a full take (JobQueue.get_batch)
        self.queue = JobQueue(queue_size, policy)
        self._states: dict[int, State] = {}
        self._stretch: dict[int, int] = {}  # the stretch (outages before it) each stream's state is of
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.windows: dict[int, int] = {}
        self.dropped: dict[int, int] = {}
        self.failed: dict[int, int] = {}  # windows the model failed on, per stream
        self.model_errors = 0
        self.batches = 0
        self.busy_s = 0.0
        self.on_model_time: Callable[[float], None] | None = None  # seconds of each model call
        self.last_error: str | None = None  # the latest model error
        self.failure: str | None = None  # why the worker stopped early, if it did
        self._warm_example: torch.Tensor | None = None  # set by warm_up, used once by the worker
        self.warmed = threading.Event()  # the worker has made its warm-up calls (if any)

    # -- producer side ---------------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue a job (may wait under the ``block`` policy); drops are counted per stream."""
        dropped = self.queue.put(job)
        if dropped is not None:
            self._count(self.dropped, dropped.stream)

    def _count(self, table: dict[int, int], stream: int, n: int = 1) -> None:
        with self._lock:
            table[stream] = table.get(stream, 0) + n

    # -- lifecycle -------------------------------------------------------------------------------------

    def warm_up(self, example: torch.Tensor) -> None:
        """Have the worker make a few calls on an example input ``(T, F)`` when it starts, before it
        takes any window (``warmed`` is set once done), so that the first real windows do not pay for
        lazy setup. That setup is partly per thread: with the calls made in the calling thread, the
        worker's first real call (model and hand-off) still took 18 ms against 7 ms for the next ones;
        made in the worker, 7 ms. The default CNN's first three bf16 calls took 16.9, 8.7 and 4.2 ms
        against 3.7 ms after. Windowed models are warmed through the batch split, which also
        starts and warms its helper threads."""
        self._warm_example = example

    @property
    def warm_up_calls(self) -> int:
        """Model calls the warm-up makes: ``WARM_UP_CALLS`` rounds of one call per worker."""
        return WARM_UP_CALLS * (1 if self.recurrent else self._split.workers)

    def _warm(self) -> None:
        example, self._warm_example = self._warm_example, None
        try:
            if example is not None:
                for _ in range(WARM_UP_CALLS):
                    self._warm_call(example)
        except Exception as exc:  # the real windows will show it (as counted model errors)
            log.warning("model warm-up failed: %s: %s", type(exc).__name__, exc)
        finally:
            self.warmed.set()

    def _warm_call(self, example: torch.Tensor) -> None:
        """One warm-up round: one column, or one window per worker (``warm_up_calls`` counts these)."""
        if self.recurrent:
            self.runner.score_columns([example], [self.runner.init_state()])
        else:
            self._split([example] * self._split.workers)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="streamd-engine", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """No more input: the worker classifies what is queued, then exits."""
        self.queue.close()

    def abandon(self) -> None:
        """Stop soon: the worker finishes its current batch; queued windows are dropped and counted."""
        for job in self.queue.abandon():
            self._count(self.dropped, job.stream)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker; True if it has exited."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- worker ----------------------------------------------------------------------------------------

    def _loop(self) -> None:
        before = torch.get_num_threads()
        if self.threads > 0:  # per thread: a setting made in another thread does not reach this one
            torch.set_num_threads(intra_op_threads(self.threads))
        try:
            self._warm()
            while True:
                batch = self.queue.get_batch(self.take, timeout=0.1, fill_s=self.fill_s)
                if batch is None:
                    return
                if batch:
                    for group in self._recurrent_groups(batch) if self.recurrent else [batch]:
                        self._run(group)
        except Exception as exc:  # a bug past the model (handing results on): stop visibly, free producers
            log.exception("the engine stopped")
            self.failure = f"engine stopped: {type(exc).__name__}: {exc}"
            self.abandon()
        finally:
            self._split.close()
            torch.set_num_threads(before)

    def _state(self, job: Job) -> State:
        """The recurrent state ``job`` continues: a stream's first, or the first after an outage (a new
        stretch: ``streamd.gaps``), starts from the initial state, as that stretch alone would offline."""
        stream, stretch = job.stream, job.window.stretch
        if stream not in self._states or self._stretch.get(stream, 0) != stretch:
            self._states[stream] = self.runner.init_state()
            self._stretch[stream] = stretch
        return self._states[stream]

    @staticmethod
    def _rounds(batch: list[Job]) -> list[list[Job]]:
        """Split so that each model call holds at most one column per stream, in stream order."""
        per_stream: dict[int, list[Job]] = {}
        for job in batch:
            per_stream.setdefault(job.stream, []).append(job)
        depth = max(len(jobs) for jobs in per_stream.values())
        return [[jobs[r] for jobs in per_stream.values() if r < len(jobs)] for r in range(depth)]

    def _recurrent_groups(self, batch: list[Job]) -> list[list[Job]]:
        """Model calls for recurrent jobs: with catch-up, streams with the same number of pending columns
        share one call (stream-major, columns in order); otherwise one column per stream per call."""
        if not self.runner.can_catch_up:
            return self._rounds(batch)
        per_run: dict[tuple[int, int], list[Job]] = {}  # (stream, stretch): an outage starts a new run
        for job in batch:
            per_run.setdefault((job.stream, job.window.stretch), []).append(job)
        groups: list[list[Job]] = []
        while per_run:  # each round takes every stream's earliest run; equal depths share a call
            firsts: dict[int, tuple[int, int]] = {}
            for key in per_run:
                firsts.setdefault(key[0], key)
            by_depth: dict[int, list[Job]] = {}
            for key in firsts.values():
                jobs = per_run.pop(key)
                by_depth.setdefault(len(jobs), []).extend(jobs)
            groups += by_depth.values()
        return groups

    def _run(self, jobs: list[Job]) -> None:
        started = time.perf_counter()
        try:
            scores = self._score(jobs)
        except Exception as exc:  # a failing model must not kill the daemon: count, log, go on
            self._model_error(jobs, f"{type(exc).__name__}: {exc}")
            return
        finally:
            elapsed = time.perf_counter() - started
            self.busy_s += elapsed
            if self.on_model_time is not None:
                self.on_model_time(elapsed)
        self.batches += 1
        finite = torch.isfinite(scores).all(dim=1)
        if not bool(finite.all()):
            self._model_error(
                [j for j, ok in zip(jobs, finite.tolist(), strict=True) if not ok], "non-finite scores"
            )
            keep = finite.nonzero().flatten().tolist()
            jobs, scores = [jobs[i] for i in keep], scores[finite]
        for job in jobs:
            self._count(self.windows, job.stream)
        if jobs:
            self.on_results(jobs, scores)

    def _score(self, jobs: list[Job]) -> torch.Tensor:
        features = [job.window.features for job in jobs]
        if not self.recurrent:
            return self._split(features)
        streams = list(dict.fromkeys(job.stream for job in jobs))
        if len(streams) < len(jobs):  # catch-up: several columns per stream (see _recurrent_groups)
            depth = len(jobs) // len(streams)
            runs = [features[i * depth : (i + 1) * depth] for i in range(len(streams))]
            states = [self._state(first) for first in jobs[::depth]]  # each run's first job
            scores, new_states = self.runner.score_column_runs(runs, states)
            self._states.update(zip(streams, new_states, strict=True))
            return scores
        states = [self._state(job) for job in jobs]
        scores, new_states = self.runner.score_columns(features, states)
        for job, state in zip(jobs, new_states, strict=True):
            self._states[job.stream] = state
        return scores

    def _model_error(self, jobs: list[Job], reason: str) -> None:
        with self._lock:
            self.model_errors += len(jobs)
            self.last_error = reason
            for job in jobs:
                self.failed[job.stream] = self.failed.get(job.stream, 0) + 1
        for job in jobs:
            w = job.window
            name = self.stream_names[job.stream] if job.stream < len(self.stream_names) else job.stream
            log.warning(
                "model error on stream %s window %d (%g-%g s): %s", name, w.index, w.t_start, w.t_end, reason
            )

    # -- counters --------------------------------------------------------------------------------------

    def done_with(self, stream: int) -> tuple[int, int]:
        """(classified, handled) windows of ``stream``, read together: handled counts the classified,
        dropped and failed ones."""
        with self._lock:
            classified = self.windows.get(stream, 0)
            return classified, classified + self.dropped.get(stream, 0) + self.failed.get(stream, 0)

    def counters(self, stream: int) -> dict[str, int]:
        with self._lock:
            return {
                "windows": self.windows.get(stream, 0),
                "dropped_windows": self.dropped.get(stream, 0),
                "model_errors": self.model_errors,
                "queue_depth": len(self.queue),
            }


def catch_up_queue_factor(loaded: LoadedModel, max_batch: int, queue_size_setting: int) -> int:
    """How many more jobs the automatic queue holds for a recurrent model that catches up: its jobs are
    160-ms columns, so a queue of ``max_batch`` per stream lets one call take that many; otherwise 1."""
    can_chunk = callable(getattr(loaded.model, "forward_chunk", None))
    return max(1, max_batch) if loaded.recurrent and can_chunk and queue_size_setting == 0 else 1
