"""``streamd classify PATH...``: clip-level top-k labels of audio files, offline.

Files are read and scored window by window in constant memory (``streamd.clip_scoring``): the windows'
probabilities are averaged; a file shorter than a window is padded with silence to one (as everywhere),
and a note on stderr says so; a file of digital silence is scored, and a warning on stderr (and
``"digital_silence": true`` in its JSON line) says its scores mean nothing. A file that cannot be read is
reported on stderr (one line, as replay reports it), the others are still classified, and the exit
status is then 1.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from audio_core.audio_file import display_path
from audio_core.digital_silence import SILENCE_NOTE
from audio_core.scoring import top_k
from audio_core.shipped_models import MODEL_HELP
from audio_core.windows import CLIP_HOP_S, checkpoint_plan, clip_hop_s
from models.precision import PRECISIONS
from streamd.clip_scoring import FileScores, score_file
from streamd.config import load_model_toml
from streamd.config_cli import config_from_args
from streamd.config_sections import MAX_THREADS, WindowSection
from streamd.errors import AudioInputError, ConfigError
from streamd.model_loading import resolve_model, window_warnings
from streamd.path_args import path_arg
from streamd.sinks import write_line
from streamd.window_scoring import short_audio_note

HELP = "classify audio files offline: top-k labels per file (long files window by window)"
# classify's own default hop: the clip-level average of training and evaluate (``waveform_scores``);
# replay's and run's 1.0 s is a live-latency choice
DEFAULT_HOP_S = CLIP_HOP_S


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="audio files (any format libsndfile reads)")
    parser.add_argument(
        "--model",
        metavar="NAME|FILE.toml",
        default="default",
        help=MODEL_HELP,
    )
    parser.add_argument(
        "--checkpoint", type=path_arg, metavar="PATH", help="a .safetensors checkpoint (overrides --model)"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="auto (default, or the --model TOML's: bf16 where the hardware runs it natively, else fp32), "
        "fp32, bf16 or int8",
    )
    parser.add_argument("--top-k", type=int, default=5, help="labels to show per file (default 5)")
    parser.add_argument(
        "--hop-s",
        type=float,
        help=f"hop between windows of long files, a multiple of 10 ms (default {DEFAULT_HOP_S:g}, or half "
        "the window if shorter (the model's own, or --window-s): the clip average of training and evaluate; "
        "with --windows the --model TOML's [windows] hop_s if it sets one)",
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per line: {file, labels} (--windows: jsonl)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    from streamd.window_classify import add_window_arguments

    add_window_arguments(parser)


def _check_options(args: argparse.Namespace) -> None:
    if args.top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {args.top_k}")
    if not 0 <= args.threads <= MAX_THREADS:  # torch crashes (a segfault) on some huge counts
        raise ConfigError(f"--threads must be between 0 and {MAX_THREADS}, got {args.threads}")


def window_settings(args: argparse.Namespace) -> tuple[WindowSection, bool]:
    """``--window-s`` / ``--hop-s`` over the ``--model`` TOML's ``[windows]`` over classify's defaults:
    layered and checked by the code behind replay's ``--window`` / ``--hop`` (same limits, same messages);
    and whether a hop was given (by ``--hop-s`` or the TOML; if not, the hop follows the window)."""
    given = argparse.Namespace(
        model=args.model, checkpoint=args.checkpoint, window=args.window_s, hop=args.hop_s
    )
    windows = config_from_args(given, {"windows": {"hop_s": DEFAULT_HOP_S}}).windows
    hop_given = args.hop_s is not None
    if not hop_given and args.model is not None and args.model.endswith(".toml"):
        hop_given = "hop_s" in load_model_toml(args.model).get("windows", {})
    return windows, hop_given


def _text_line(path: str, labels: list[dict]) -> str:
    best = "  ".join(f"{item['label']} {item['score']:.3f}" for item in labels)
    return f"{path}: {best}"


def _note_padding(path: str, result: FileScores, recurrent: bool) -> None:
    note = short_audio_note(result.duration_s, result.padded_s, "step" if recurrent else "window")
    print(f"streamd: note: {path}: {note}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from audio_core.audio_file import refuse_stdin_twice
    from streamd.decoder_notes import decoder_notes
    from streamd.window_classify import check_window_options, run_windows

    _check_options(args)
    refuse_stdin_twice(args.paths)
    check_window_options(args)
    windows, hop_given = window_settings(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    with decoder_notes(args.paths):  # mpg123's prints as streamd's lines, as the daemon shows them
        if args.windows:
            return run_windows(args, windows, hop_given)
        return _classify_files(args, windows)


def _classify_files(args: argparse.Namespace, windows: WindowSection) -> int:
    """Clip-level classify: one line per file."""
    loaded = resolve_model(args, compute="cpu")
    # a file's clip-level score is the clip average of training and evaluate: a model TOML's live hop
    # does not change it, only --hop-s does
    hop_s = windows.hop_s if args.hop_s is not None else clip_hop_s(loaded.info)
    try:
        checkpoint_plan(loaded.info, hop_s)  # the hop rule of every command
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for warning in window_warnings(None, hop_s, loaded):  # a recurrent model's clip score: hop picks steps
        print(f"streamd: warning: {warning}", file=sys.stderr, flush=True)
    if windows.window_s is not None:  # only a model TOML sets it here (--window-s needs --windows)
        print(
            f"streamd: note: the model TOML's window ({windows.window_s:g} s) applies to --windows, run "
            "and replay; a file's clip-level score uses the checkpoint's own window",
            file=sys.stderr,
            flush=True,
        )
    labels_shown = min(args.top_k, len(loaded.info.labels))
    failed = 0
    for path in args.paths:
        try:
            result = score_file(loaded, path, hop_s)
        except AudioInputError as exc:
            failed += 1
            print(f"streamd: error: {exc}", file=sys.stderr, flush=True)
            continue
        if result.padded_s > 0:
            _note_padding(display_path(path), result, loaded.recurrent)
        if result.silent:  # evaluate leaves such a clip out: here its scores are shown, and said to be void
            print(f"streamd: warning: {display_path(path)}: {SILENCE_NOTE}", file=sys.stderr, flush=True)
        best = top_k(result.scores, loaded.info.labels, labels_shown)
        labels = [{"label": label, "score": score} for label, score in best]
        if args.json:
            silent = {"digital_silence": True} if result.silent else {}
            line = json.dumps({"file": display_path(path), "labels": labels, **silent})
        else:
            line = _text_line(display_path(path), labels)
        try:
            write_line(sys.stdout, line)
        except BrokenPipeError:  # the reader has gone (| head): stop quietly, as replay --json does
            break
    if failed:
        print(f"streamd: {failed} of {len(args.paths)} file(s) could not be classified", file=sys.stderr)
        return 1
    return 0
