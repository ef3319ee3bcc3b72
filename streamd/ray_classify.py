"""``classify --windows --ray``: the same window-level results, computed on a Ray cluster with Ray Data.

    file list -> flat_map (Ray tasks: decode, resample, fbank, windows) -> map_batches over an actor pool
    (each actor loads the model once) -> rows streamed back in order -> ``FileResult`` per file

Rows carry a ``kind``: ``window`` (features to score), then ``end`` (the file's duration; with a ``message``
when its end could not be read: the windows are those of its readable part) or ``error`` (why the file
could not be read; windows of it before the error are dropped). The driver groups rows by file,
so the writer sees exactly what the local run gives it. Execution streams (Ray Data's backpressure keeps
memory bounded); order is preserved so a file's rows arrive together. Only this module imports Ray.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from audio_core.errors import TruncatedAudio
from audio_core.front_end import front_end
from audio_core.windows import WindowPlan
from streamd.errors import AudioInputError, ConfigError, StreamdError
from streamd.window_scoring import FileResult, WindowResult, duration_s, file_windows, partial_result

BLOCK_BYTES = 8 * 1024 * 1024  # Ray Data blocks of about 30 windows of 5 s


def _row(path: str, kind: str, shape: tuple[int, int], **values: Any) -> dict[str, Any]:
    row = {
        "path": path,
        "kind": kind,
        "index": -1,
        "t_start": 0.0,
        "t_end": 0.0,
        "seconds": 0.0,
        "message": "",
    }
    row["features"] = np.zeros(shape, dtype=np.float32)
    row.update(values)
    return row


class FileWindows:
    """Ray task body: one file's rows (its windows' raw fbank features, then ``end`` or ``error``)."""

    def __init__(self, plan: WindowPlan) -> None:
        self.plan = plan
        self.shape = (plan.frames_per_window, plan.features.num_mel_bins)

    def __call__(self, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
        path = str(item["name"])  # as given; read as an absolute path (workers run elsewhere)
        front = front_end(self.plan)
        try:
            for w in file_windows(str(item["path"]), front):
                values = {"index": w.index, "t_start": w.t_start, "t_end": w.t_end}
                yield _row(path, "window", self.shape, features=w.features.numpy(), **values)
        except TruncatedAudio as exc:  # its readable part's windows are kept, as a local run keeps them
            message = json.dumps([str(exc), exc.read_s, exc.unread])
            yield _row(path, "end", self.shape, seconds=duration_s(front), message=message)
            return
        except AudioInputError as exc:
            yield _row(path, "error", self.shape, message=str(exc))
            return
        yield _row(path, "end", self.shape, seconds=duration_s(front))


class WindowClassifier:
    """Ray actor: loads the model once, then scores batches of rows (``window`` rows only)."""

    def __init__(self, model: str, checkpoint: str | None, top_k: int, min_score: float, gpu: bool) -> None:
        import argparse
        import dataclasses

        import torch

        from streamd.model_loading import resolve_model
        from streamd.model_runner import ModelRunner

        names = argparse.Namespace(model=model, checkpoint=None if checkpoint is None else Path(checkpoint))
        loaded = resolve_model(names, compute="cpu")
        if gpu:
            device = torch.device("cuda")
            loaded = dataclasses.replace(loaded, model=loaded.model.to(device), device=device)
        self.runner = ModelRunner(loaded)
        self.labels = loaded.info.labels
        self.top_k, self.min_score = top_k, min_score

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from streamd.window_scoring import score_batch, window_labels

        kinds = batch["kind"]
        chosen = np.flatnonzero(kinds == "window")
        labels = np.full(len(kinds), "[]", dtype=object)
        if chosen.size:
            scores = score_batch(
                self.runner, [torch.from_numpy(np.asarray(batch["features"][i])) for i in chosen]
            )
            for i, row in zip(chosen, scores, strict=True):
                labels[i] = json.dumps(window_labels(row, self.labels, self.top_k, self.min_score))
        out = {key: value for key, value in batch.items() if key != "features"}
        out["labels"] = labels
        return out


def _connect(address: str) -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray Data: pip install 'streamd[ray]'") from None
    try:
        ray.init(
            address=None if address == "local" else address,
            ignore_reinit_error=True,
            log_to_driver=False,
            include_dashboard=False,
            configure_logging=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise StreamdError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
    return ray


def _dataset(ray: Any, args: argparse.Namespace, paths: list[str], plan: WindowPlan) -> Any:
    for name in ("ray", "ray.data"):  # Ray's own progress lines would drown the one progress bar
        logging.getLogger(name).setLevel(logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.target_max_block_size = BLOCK_BYTES
    context.enable_progress_bars = False
    items = [{"path": str(Path(p).absolute()), "name": p} for p in paths]
    ds = ray.data.from_items(items, override_num_blocks=len(paths))
    ds = ds.flat_map(FileWindows(plan), num_cpus=1)
    checkpoint = None if args.checkpoint is None else str(args.checkpoint)
    return ds.map_batches(
        WindowClassifier,
        fn_constructor_args=(args.model, checkpoint, args.top_k, args.min_score, args.ray_gpus > 0),
        batch_size=args.ray_batch,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=args.ray_actors),
        num_cpus=0 if args.ray_gpus > 0 else 1,
        num_gpus=args.ray_gpus,
    )


def group_rows(rows: Iterator[dict[str, Any]]) -> Iterator[FileResult]:
    """Consecutive rows of one file -> its ``FileResult`` (at its ``end`` or ``error`` row)."""
    windows: list[WindowResult] = []
    for row in rows:
        path, kind = str(row["path"]), str(row["kind"])
        if kind == "window":
            labels = json.loads(str(row["labels"]))
            windows.append(
                WindowResult(int(row["index"]), float(row["t_start"]), float(row["t_end"]), labels)
            )
        elif kind == "end" and row["message"]:
            failure = TruncatedAudio(*json.loads(str(row["message"])))
            yield partial_result(path, windows, float(row["seconds"]), failure)
            windows = []
        elif kind == "end":
            yield FileResult(path, windows, float(row["seconds"]))
            windows = []
        else:
            yield FileResult(path, [], error=str(row["message"]))
            windows = []


def ray_results(args: argparse.Namespace, plan: WindowPlan, paths: list[str]) -> Iterator[FileResult]:
    """Classify ``paths`` on Ray (``args.ray_address``: a cluster address, None for a local instance), file
    by file, in order."""
    ray = _connect(args.ray_address or "local")
    try:
        yield from group_rows(_dataset(ray, args, paths, plan).iter_rows())
    except ray.exceptions.RayError as exc:  # e.g. the model cannot be loaded on a node
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StreamdError(f"the Ray run failed: {first}") from None
    finally:
        ray.shutdown()
