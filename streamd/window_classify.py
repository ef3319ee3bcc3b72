"""``streamd classify --windows``: every window's top-k for many files, locally or on Ray (``--ray``).

Files already recorded in the output's progress list are skipped; a file that cannot be read is reported
on stderr (one line) and the rest are still classified, with exit status 1 at the end. A progress bar on
stderr counts files and hours of audio; the last line says how fast it went (audio hours per minute).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from audio_core.audio_file import STDIN
from audio_core.windows import WindowPlan, checkpoint_window_s, offline_hop_s
from streamd.config_sections import WindowSection
from streamd.errors import ConfigError
from streamd.model_loading import LoadedModel
from streamd.path_args import path_arg
from streamd.window_formats import raven_table_name
from streamd.window_output import FORMATS, WindowOutput, source_stamp
from streamd.window_scoring import FileResult
from streamd.window_settings import settings as window_settings

# Options of --windows, and of --ray (dest: flag, default): each is refused without its switch, so that
# none does nothing unseen; argparse leaves them None (False: a flag) so that "given" can be told.
WINDOW_OPTIONS: dict[str, tuple[str, Any]] = {
    "out": ("--out", None),
    "format": ("--format", "csv"),
    "window_s": ("--window-s", None),
    "min_score": ("--min-score", 0.0),
    "no_progress": ("--no-progress", False),
    "ray": ("--ray", False),
}
RAY_OPTIONS: dict[str, tuple[str, Any]] = {
    "ray_address": ("--ray-address", None),
    "ray_actors": ("--ray-actors", 1),
    "ray_gpus": ("--ray-gpus", 0.0),
    "ray_batch": ("--ray-batch", 16),
}


def add_window_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``classify --windows`` (and ``--ray``)."""
    group = parser.add_argument_group("window-level output (--windows)")
    group.add_argument("--windows", action="store_true", help="write every window's top-k to --out")
    group.add_argument(
        "--out", type=path_arg, metavar="PATH", help="output file (csv, jsonl) or directory (raven)"
    )
    group.add_argument("--format", choices=FORMATS, help="output format (default csv; jsonl with --json)")
    group.add_argument(
        "--window-s",
        type=float,
        help="window length in seconds (default: the --model TOML's [windows] window_s, else the window "
        "the model was trained on)",
    )
    group.add_argument("--min-score", type=float, help="leave out labels scoring below this (default 0)")
    group.add_argument("--no-progress", action="store_true", default=None, help="no progress bar")
    group.add_argument(
        "--ray",
        action="store_true",
        default=None,
        help="run on Ray Data: a local Ray instance, or the cluster at --ray-address",
    )
    group.add_argument(
        "--ray-address", metavar="ADDRESS", help="the Ray cluster: 'auto', HOST:PORT or ray://HOST:PORT"
    )
    group.add_argument("--ray-actors", type=int, metavar="N", help="model actors (default 1)")
    group.add_argument("--ray-gpus", type=float, metavar="G", help="GPUs per model actor (default 0)")
    group.add_argument("--ray-batch", type=int, metavar="N", help="windows per actor call (default 16)")


def _refuse_without(args: argparse.Namespace, switch: str, options: dict[str, tuple[str, Any]]) -> None:
    given = [
        flag
        for dest, (flag, _) in options.items()
        if getattr(args, dest) is not None and getattr(args, dest) is not False
    ]
    if given:
        verb = "needs" if len(given) == 1 else "need"
        raise ConfigError(f"{', '.join(given)} {verb} {switch}")


def check_window_options(args: argparse.Namespace) -> None:
    """Refuse options of --windows without it (and of --ray without it), then fill in their defaults;
    ``--json --windows`` writes JSON lines (``--format jsonl``)."""
    if not args.windows:
        _refuse_without(args, "--windows (window-level output)", WINDOW_OPTIONS)
    if not args.ray:
        _refuse_without(args, "--ray", RAY_OPTIONS)
    else:
        for path in args.paths:
            text = str(path)
            if not Path(text).exists() and (text in ("auto", "local") or text.startswith("ray://")):
                raise ConfigError(
                    f"{text!r} would be read as an audio file: a Ray cluster goes in --ray-address"
                )
    if args.windows and args.json:
        if args.format not in (None, "jsonl"):
            raise ConfigError(f"--json writes JSON lines (--format jsonl), not --format {args.format}")
        args.format = "jsonl"
    for dest, (_, default) in {**WINDOW_OPTIONS, **RAY_OPTIONS}.items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)


def _check(args: argparse.Namespace) -> None:
    if args.out is None or str(args.out) == "-":  # the output is resumable: a real file, not stdout
        raise ConfigError("--windows needs --out PATH (a file for csv / jsonl, a directory for raven; not -)")
    if not 0.0 <= args.min_score <= 1.0:
        raise ConfigError(f"--min-score must be within [0, 1], got {args.min_score}")
    if args.ray_actors < 1 or args.ray_batch < 1 or args.ray_gpus < 0:
        raise ConfigError("--ray-actors and --ray-batch must be >= 1, --ray-gpus >= 0")
    if args.format == "raven":
        names: dict[str, str] = {}
        for path in map(str, args.paths):
            other = names.setdefault(raven_table_name(path), path)
            if other != path:
                raise ConfigError(f"{other} and {path} would share one Raven table: rename one")


def local_results(
    args: argparse.Namespace, loaded: LoadedModel, plan: WindowPlan, paths: list[str]
) -> Iterator[FileResult]:
    """Classify ``paths`` one after another in this process."""
    from streamd.model_runner import ModelRunner
    from streamd.window_scoring import classify_file

    runner = ModelRunner(loaded)
    for path in paths:
        yield classify_file(runner, path, plan, args.top_k, args.min_score)


def _total_seconds(paths: list[str]) -> float:
    """Audio length of the files, from their headers (unreadable ones and standard input, which can be
    read only once, count 0)."""
    from audio_core.audio_file import probe_audio
    from streamd.errors import AudioInputError

    total = 0.0
    for path in paths:
        if path != STDIN:
            with contextlib.suppress(AudioInputError):
                total += probe_audio(path).duration_s
    return total


class _Progress:
    """A rich progress bar over files and audio hours on stderr (or nothing)."""

    def __init__(self, files: int, seconds: float, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:.2f}/{task.total:.2f}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self.files = self.bar.add_task("files", total=files)
            self.hours = self.bar.add_task("audio hours", total=seconds / 3600)
            self.bar.start()

    def advance(self, seconds: float) -> None:
        if self.bar is not None:
            self.bar.advance(self.files, 1)
            self.bar.advance(self.hours, seconds / 3600)

    def note(self, line: str) -> None:
        """A line on stderr above the bar."""
        if self.bar is not None:
            self.bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _recheck_changed(output: WindowOutput, paths: list[str], args: argparse.Namespace) -> None:
    """Finished files whose audio changed since: classified again into a Raven directory (a table per
    file), a warning for a CSV / JSON-lines output (its rows cannot be taken back)."""
    changed = [p for p in paths if p in output.done and output.changed(p)]  # paths: each once
    if changed and args.format == "raven":
        for path in changed:
            output.forget(path)
        print(
            f"streamd: note: {len(changed)} file(s) changed since they were classified: classified again",
            file=sys.stderr,
            flush=True,
        )
    elif changed:
        print(
            f"streamd: warning: {len(changed)} file(s) changed since they were classified into {args.out} "
            f"(e.g. {changed[0]}): their rows there are of the earlier audio; "
            "classify them into another output",
            file=sys.stderr,
            flush=True,
        )


def run_windows(args: argparse.Namespace, windows: WindowSection, hop_given: bool = True) -> int:
    """Classify every window of ``args.paths`` into ``args.out`` with the window settings ``windows``
    (``check_window_options`` has run; without ``hop_given`` the hop is ``offline_hop_s`` of the window
    used); 1 if any file failed."""
    from streamd.model_loading import resolve_model, window_warnings
    from streamd.window_scoring import window_plan

    _check(args)
    started = time.monotonic()
    loaded = resolve_model(args, compute="cpu")
    if not hop_given:
        window_s = windows.window_s if windows.window_s is not None else checkpoint_window_s(loaded.info)
        windows = replace(windows, hop_s=offline_hop_s(window_s))
    plan = window_plan(loaded, windows.window_s, windows.hop_s)
    for warning in window_warnings(windows.window_s, windows.hop_s, loaded):
        print(f"streamd: warning: {warning}", file=sys.stderr, flush=True)
    output = WindowOutput(
        args.out, args.format, window_settings(args, windows, loaded, plan), plan.features.sample_rate / 2
    )
    if output.note:
        print(f"streamd: note: {output.note}", file=sys.stderr, flush=True)
    paths = list(dict.fromkeys(str(p) for p in args.paths))  # a file named twice is classified once
    if clash := output.table_clash(paths):
        output.close()
        raise ConfigError(clash)
    _recheck_changed(output, paths, args)
    todo = [p for p in paths if p not in output.done or p == STDIN]  # standard input is new audio each run
    stamps = {p: source_stamp(p) for p in todo}
    skipped = len(paths) - len(todo)
    if skipped:
        print(f"streamd: {skipped} file(s) already done in {args.out}: skipped", file=sys.stderr, flush=True)
    show = not args.no_progress and bool(todo)
    progress = _Progress(len(todo), _total_seconds(todo) if show else 0.0, show)
    failed = done = 0
    seconds = 0.0
    try:
        if not todo:
            results: Iterator[FileResult] = iter(())
        elif args.ray:
            from streamd.ray_classify import ray_results

            results = ray_results(args, plan, todo)
        else:
            results = local_results(args, loaded, plan, todo)
        for result in results:
            if result.error is not None:
                failed += 1
                progress.note(f"streamd: error: {result.error}")
            else:
                output.write(result, stamps.get(result.file))
                done += 1
                seconds += result.duration_s
            progress.advance(result.duration_s)
    finally:
        progress.stop()
        output.close()
    elapsed = time.monotonic() - started
    rate = seconds / 3600 / (elapsed / 60) if elapsed > 0 else 0.0
    print(
        f"streamd: {done} file(s), {seconds / 3600:.4f} h of audio, in {elapsed:.1f} s: "
        f"{rate:.3f} audio hours per minute",
        file=sys.stderr,
        flush=True,
    )
    if failed:
        print(f"streamd: {failed} of {len(todo)} file(s) could not be classified", file=sys.stderr)
        return 1
    return 0
