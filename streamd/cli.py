"""Command line entry point: ``streamd <command> ...``.

Each command lives in its own module under ``streamd.commands`` exposing ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. User errors (``StreamdError``) become one line on
stderr and a non-zero exit; nothing else reaches the user as a traceback unless ``STREAMD_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from streamd import __version__
from streamd.errors import StreamdError

COMMANDS: dict[str, str] = {
    "run": "streamd.commands.run",
    "replay": "streamd.commands.replay",
    "listen": "streamd.commands.listen",
    "devices": "streamd.commands.devices",
    "classify": "streamd.commands.classify",
    "convert": "streamd.commands.convert",
    "train": "streamd.commands.train",
    "evaluate": "streamd.commands.evaluate",
    "keys": "streamd.commands.keys",
}


def _available_commands() -> dict[str, object]:
    modules = {}
    for name, module_name in COMMANDS.items():
        try:
            modules[name] = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamd", description="Streaming real-time audio classifier daemon."
    )
    parser.add_argument("--version", action="version", version=f"streamd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in _available_commands().items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)  # type: ignore[attr-defined]
        module.add_arguments(p)  # type: ignore[attr-defined]
        p.set_defaults(_run=module.run)  # type: ignore[attr-defined]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except StreamdError as exc:
        print(f"streamd: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # last line of defence: never a traceback for the user
        if os.environ.get("STREAMD_DEBUG"):
            raise
        print(f"streamd: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
