"""The part of the engine without threads: runs a loaded model on batches of windows or columns.

``ModelRunner`` puts batches on the model's device and stacks per-stream recurrent states; scoring itself
(normalise, autocast, softmax/sigmoid) is ``audio_core.scoring``. ``score_one_by_one`` is its plain
reference; ``model_threads`` is how many workers the model gets, ``intra_op_threads`` how many torch
threads one call of it gets.
"""

from __future__ import annotations

import os

import torch

from audio_core.scoring import State, chunk_scores, scores, step_scores
from streamd.errors import ConfigError
from streamd.model_loading import LoadedModel


def model_threads(requested: int, device: torch.device) -> int:
    """Model workers: ``requested`` if set; on CPU otherwise one per core, but no more than torch's own
    thread count (which follows OMP_NUM_THREADS) (a batch of windows is split over them,
    ``streamd.split_scoring``; a single window or a recurrent step gets ``intra_op_threads``); elsewhere
    torch's own default."""
    if requested > 0:
        return requested
    if device.type != "cpu":
        return torch.get_num_threads()
    return max(1, min(torch.get_num_threads(), usable_cores()))


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads_warning(requested: int) -> str | None:
    """A warning for ``[engine] threads`` beyond this machine's cores (each worker then waits on the
    others: 1000 on 2 cores classified nothing in a minute)."""
    cores = usable_cores()
    if requested <= cores:
        return None
    return f"[engine] threads = {requested} is more than the {cores} core(s) this process may use: slow"


def intra_op_threads(workers: int) -> int:
    """Torch threads for one model call that has the workers to itself: all but one, so that capture,
    features and publishing keep a core (an intra-op call waits for its slowest thread, so a core taken
    by another stage stalls it; on 2 cores one thread measured faster than two)."""
    return max(1, workers - 1)


def check_window_size(loaded: LoadedModel, frames: int, window_s: float) -> None:
    """``ConfigError`` (one line) unless the windowed model takes windows of ``frames`` frames: one call on
    silence at start-up, for a window other than the checkpoint's own, instead of a model error per
    window later."""
    try:
        ModelRunner(loaded).score_windows([torch.zeros(frames, loaded.info.features.num_mel_bins)])
    except (RuntimeError, ValueError, IndexError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"the model {loaded.name} cannot take windows of {window_s:g} s ({frames} frames): {reason}"
        ) from None


class ModelRunner:
    """Runs a ``LoadedModel`` on batches of windows (or columns) and returns class scores ``(B, C)``.

    Scoring itself is ``audio_core.scoring`` (normalise, autocast, softmax/sigmoid); this adds the device
    and the stacking of per-stream states.
    """

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.info = loaded.info
        self.device = loaded.device
        self.precision = loaded.precision

    def _stack(self, features: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(features).to(self.device, non_blocking=True)  # (B, T, F)

    def score_windows(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Scores of windows ``[(T, F)] * B`` -> ``(B, C)`` in one model call."""
        return scores(self.model, self.info, self._stack(features), precision=self.precision)

    def init_state(self) -> State:
        return self.model.init_state(1, device=self.device)

    def score_columns(
        self, columns: list[torch.Tensor], states: list[State]
    ) -> tuple[torch.Tensor, list[State]]:
        """One step for B streams: columns ``[(c, F)] * B`` and their states -> scores, new states."""
        stacked = {key: torch.cat([s[key] for s in states], dim=0) for key in states[0]}
        out, new = step_scores(self.model, self.info, self._stack(columns), stacked, precision=self.precision)
        split = [{key: value[i : i + 1] for key, value in new.items()} for i in range(len(columns))]
        return out, split

    @property
    def can_catch_up(self) -> bool:
        """Whether the model runs several columns of a stream in one call (``forward_chunk``)."""
        return callable(getattr(self.model, "forward_chunk", None))

    def score_column_runs(
        self, runs: list[list[torch.Tensor]], states: list[State]
    ) -> tuple[torch.Tensor, list[State]]:
        """Catch-up: ``k`` consecutive columns of each of B streams in one call -> scores ``(B * k, C)``
        (stream-major, in column order) and the new states; equal to ``k`` calls of ``score_columns``."""
        stacked = {key: torch.cat([s[key] for s in states], dim=0) for key in states[0]}
        chunks = self._stack([torch.cat(run) for run in runs])  # (B, k * c, F)
        out, new = chunk_scores(self.model, self.info, chunks, stacked, precision=self.precision)
        split = [{key: value[i : i + 1] for key, value in new.items()} for i in range(len(runs))]
        return out, split


def score_one_by_one(runner: ModelRunner, features: list[torch.Tensor]) -> torch.Tensor:
    """Reference for ``score_windows``: each window alone."""
    return torch.cat([runner.score_windows([f]) for f in features])
