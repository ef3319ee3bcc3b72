"""``streamd replay``: run audio files through exactly the live pipeline, in real time or flat out."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from streamd.commands.run import execute
from streamd.config import DaemonConfig
from streamd.config_cli import add_daemon_arguments
from streamd.fanin import add_fanin_arguments
from streamd.file_source import FileSource
from streamd.path_args import path_arg
from streamd.security import add_security_arguments
from streamd.sources import Source

HELP = "replay audio files through the live pipeline (real time, faster, or --speed max)"


MIN_SPEED = 0.01  # slower is no replay: a 5-s file would take over 8 minutes


def parse_speed(text: str) -> float | None:
    """``max`` -> None (as fast as the engine allows), else a positive multiple of real time."""
    if text.strip().lower() == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'max', got {text!r}") from None
    if not speed > 0 or speed == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number or 'max', got {text!r}")
    if speed < MIN_SPEED:
        raise argparse.ArgumentTypeError(
            f"must be at least {MIN_SPEED:g} (a hundredth of real time) or 'max', got {text!r}"
        )
    return speed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="+",
        type=path_arg,
        metavar="PATH",
        help="audio files, FIFOs or pipes (one stream each); - reads standard input",
    )
    parser.add_argument(
        "--speed",
        type=parse_speed,
        default=1.0,
        metavar="X|max",
        help="playback speed: 1.0 = real time (default), 4 = four times faster, max = as fast as possible",
    )
    add_daemon_arguments(parser)
    add_security_arguments(parser)
    add_fanin_arguments(parser)


def _file_sources(paths: list[Path], speed: float | None) -> Callable[[DaemonConfig], list[Source]]:
    def make(cfg: DaemonConfig) -> list[Source]:
        c = cfg.capture
        return [
            FileSource(
                p,
                speed=speed,
                block_s=c.block_s,
                max_block_s=c.max_block_s,
                ring_s=c.ring_s,
                wait_s=c.watchdog_s,
            )
            for p in paths
        ]

    return make


def run(args: argparse.Namespace) -> int:
    from audio_core.audio_file import refuse_stdin_twice

    refuse_stdin_twice(args.paths)
    return execute(args, _file_sources(args.paths, args.speed), live=False)
