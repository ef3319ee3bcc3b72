"""``streamd classify --windows``: every window's top-k for many files, locally or on Ray (``--ray``).

Files already recorded in the output's progress list are skipped, whatever spelling names them
(``streamd.window_files``); a file that cannot be read is reported on stderr (one line) and the rest are
still classified, with exit status 1 at the end; one whose end cannot be read keeps the windows of its
readable part, counts as done, and is reported the same way. A progress bar on stderr counts files and
hours of audio; the last line says how fast it went (audio hours per minute). Ctrl-C says where the
progress is kept: the same command resumes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from audio_core.audio_file import STDIN, display_path
from audio_core.windows import WindowPlan, checkpoint_window_s, offline_hop_s
from streamd.config_sections import WindowSection
from streamd.errors import ConfigError
from streamd.model_loading import LoadedModel
from streamd.path_args import path_arg
from streamd.window_files import AudioFile, repeat_notes, source_stamp, unique_files
from streamd.window_formats import raven_table_name
from streamd.window_output import FORMATS, WindowOutput, recorded_format
from streamd.window_progress import Progress, summary_lines, total_seconds
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
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")  # an --out named so gets JSON lines by default
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
    group.add_argument(
        "--format",
        choices=FORMATS,
        help="output format (default csv; jsonl with --json or an --out ending .jsonl, .ndjson or .json)",
    )
    group.add_argument(
        "--window-s",
        type=float,
        help="window length in seconds (default: the --model TOML's [windows] window_s, else the window "
        "the model was trained on)",
    )
    group.add_argument(
        "--min-score",
        type=float,
        help="leave out labels scoring below this (default 0); a window left with none keeps a row, no label",
    )
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
    if args.windows and args.format is None and args.out is not None:
        out = Path(str(args.out))
        if (fmt := recorded_format(out)) is not None:
            args.format = fmt  # resumed: in the format it was begun in
        elif out.suffix.lower() in JSONL_SUFFIXES:
            args.format = "jsonl"  # the name says JSON: CSV in it would be a surprise
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


def _files(args: argparse.Namespace) -> list[AudioFile]:
    """The files to classify, each once however often and however it is named (a note names each path
    that names a file again); two files that would share one Raven table are refused."""
    files, repeats = unique_files(str(p) for p in args.paths)
    if args.format == "raven":
        names: dict[str, AudioFile] = {}
        for file in files:
            other = names.setdefault(raven_table_name(file.shown), file)
            if other != file:
                shown = f"{display_path(other.shown)} and {display_path(file.shown)}"
                raise ConfigError(f"{shown} would share one Raven table: rename one")
    for note in repeat_notes(repeats):
        _say(f"streamd: note: {note}")
    return files


def local_results(
    args: argparse.Namespace, loaded: LoadedModel, plan: WindowPlan, paths: list[str]
) -> Iterator[FileResult]:
    """Classify ``paths`` one after another in this process."""
    from streamd.model_runner import ModelRunner
    from streamd.window_scoring import classify_file

    runner = ModelRunner(loaded)
    for path in paths:
        yield classify_file(runner, path, plan, args.top_k, args.min_score)


def _recheck_changed(output: WindowOutput, files: list[AudioFile], args: argparse.Namespace) -> None:
    """Finished files whose audio changed since: classified again into a Raven directory (a table per
    file), a warning for a CSV / JSON-lines output (its rows cannot be taken back)."""
    changed = [f for f in files if f.identity in output.done and output.changed(f.identity)]
    if changed and args.format == "raven":
        for file in changed:
            output.forget(file.identity)
        _say(f"streamd: note: {len(changed)} file(s) changed since they were classified: classified again")
    elif changed:
        _say(
            f"streamd: warning: {len(changed)} file(s) changed since they were classified into {args.out} "
            f"(e.g. {display_path(changed[0].shown)}): their rows there are of the earlier audio; "
            "classify them into another output"
        )


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _todo(output: WindowOutput, files: list[AudioFile], args: argparse.Namespace) -> list[AudioFile]:
    """The files not yet done in ``output`` (said how many were); standard input into an output that
    holds an earlier standard input's rows is refused (the two could not be told apart)."""
    if any(f.identity == STDIN for f in files) and STDIN in output.done:
        raise ConfigError(
            f"{args.out} already holds the rows of an earlier run's standard input (<stdin>): another "
            "one's could not be told apart from them; classify it into another output"
        )
    todo = [f for f in files if f.identity not in output.done]
    if skipped := [output.done[f.identity] for f in files if f.identity in output.done]:
        partial = sum("error" in entry for entry in skipped)
        note = f" ({partial} of them only up to a read error, as reported then)" if partial else ""
        _say(f"streamd: {len(skipped)} file(s) already done in {args.out}: skipped{note}")
    return todo


def _interrupted(output: WindowOutput, args: argparse.Namespace) -> str:
    """The line Ctrl-C leaves: what is kept where, and that the same command resumes."""
    return (
        f"streamd: interrupted: {len(output.done)} finished file(s) are kept in {args.out}, recorded in "
        f"{output.progress}; run the same command again to resume (a file cut off half-way is classified "
        "again)"
    )


def run_windows(args: argparse.Namespace, windows: WindowSection, hop_given: bool = True) -> int:
    """Classify every window of ``args.paths`` into ``args.out`` with the window settings ``windows``
    (``check_window_options`` has run; without ``hop_given`` the hop is ``offline_hop_s`` of the window
    used); 1 if any file failed, in whole or in part."""
    from streamd.model_loading import resolve_model, window_warnings
    from streamd.window_scoring import window_plan

    _check(args)
    files = _files(args)
    started = time.monotonic()
    loaded = resolve_model(args, compute="cpu")
    if not hop_given:
        window_s = windows.window_s if windows.window_s is not None else checkpoint_window_s(loaded.info)
        windows = replace(windows, hop_s=offline_hop_s(window_s))
    plan = window_plan(loaded, windows.window_s, windows.hop_s)
    for warning in window_warnings(windows.window_s, windows.hop_s, loaded):
        _say(f"streamd: warning: {warning}")
    output = WindowOutput(
        args.out, args.format, window_settings(args, windows, loaded, plan), plan.features.sample_rate / 2
    )
    for note in output.notes:
        _say(f"streamd: note: {note}")
    try:
        if clash := output.table_clash(files):
            raise ConfigError(clash)
        _recheck_changed(output, files, args)
        todo = _todo(output, files, args)
    except BaseException:
        output.close()
        raise
    identities = {f.shown: f.identity for f in todo}
    stamps = {f.shown: source_stamp(f.shown) for f in todo}
    paths = [f.shown for f in todo]
    show = not args.no_progress and bool(todo)
    progress = Progress(len(todo), total_seconds(paths) if show else 0.0, show)
    failed = partial = done = 0
    seconds = 0.0
    try:
        if not todo:
            results: Iterator[FileResult] = iter(())
        elif args.ray:
            from streamd.ray_classify import ray_results

            results = ray_results(args, plan, paths)
        else:
            results = local_results(args, loaded, plan, paths)
        for result in results:
            if result.error is not None:
                failed += 1
                progress.note(f"streamd: error: {result.error}")
            else:
                for line in result.notes():
                    progress.note(line)
                output.write(result, identities[result.file], stamps.get(result.file))
                done += 1
                seconds += result.duration_s
            if result.partial is not None:
                partial += 1
                progress.note(
                    f"streamd: error: {result.partial}: the windows of its first {result.duration_s:.2f} s "
                    f"are in {args.out}, and it counts as done (a rerun skips it)"
                )
            progress.advance(result.duration_s)
    except BaseException as exc:
        progress.stop()
        if isinstance(exc, KeyboardInterrupt) or _ctrl_c_just_now():
            _say(_interrupted(output, args))
        raise
    finally:
        progress.stop()
        output.close()
    counts = {"done": done, "failed": failed, "partial": partial, "todo": len(todo)}
    elapsed = time.monotonic() - started
    for line in summary_lines(counts, seconds, elapsed, str(args.out), len(args.paths), len(files)):
        _say(line)
    return 1 if failed or partial else 0


def _ctrl_c_just_now() -> bool:
    """Whether an error now is what a Ctrl-C became in native code (``streamd.cli``'s rule)."""
    from streamd.cli import interrupted_just_now

    return interrupted_just_now()
