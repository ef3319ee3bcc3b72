"""Command line entry point: ``streamd <command> ...``.

Each command lives in its own module under ``streamd.commands`` exposing ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``; only the module of the command being run is
imported. User errors (``StreamdError``) become one line on stderr and a non-zero exit; nothing else
reaches the user as a traceback unless ``STREAMD_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import ClassVar, NoReturn

from streamd import __version__
from streamd.errors import StreamdError
from streamd.held_interrupts import held_interrupts

# name -> (module, one-line help); a command's module (and torch with it) is imported only when it runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("streamd.commands.run", "classify live audio from input devices and publish every result"),
    "replay": (
        "streamd.commands.replay",
        "replay audio files through the live pipeline (real time or --speed max)",
    ),
    "listen": (
        "streamd.commands.listen",
        "subscribe to a streamd publisher and print messages as JSON lines",
    ),
    "devices": ("streamd.commands.devices", "list audio input devices (index, name, channels, default rate)"),
    "classify": ("streamd.commands.classify", "classify audio files offline: top-k labels per file"),
    "convert": ("streamd.commands.convert", "convert an AST, AuM or ImageNet ViT/DeiT checkpoint"),
    "train": ("streamd.commands.train", "train (or k-fold cross-validate) a model from a TOML experiment"),
    "evaluate": ("streamd.commands.evaluate", "evaluate a checkpoint: clip metrics or streaming accuracy"),
    "keys": ("streamd.commands.keys", "create a CURVE key pair for authenticated publishing and listening"),
    "proxy": ("streamd.commands.proxy", "forward many daemons' messages to many subscribers (XSUB/XPUB)"),
}


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The first argument naming a command (options before it are streamd's own)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


class _Parser(argparse.ArgumentParser):
    """streamd's parser, and each command's (``add_subparsers`` makes them of this class): a bad argument
    is one line ``streamd: error: ...`` and exit 2, as every other bad input (not the usage text)."""

    argv: ClassVar[list[str]] = []  # what is being parsed: a file named '-...' is pointed to ``--``

    def error(self, message: str) -> NoReturn:
        files = (a for a in _Parser.argv if a.startswith("-") and len(a) > 1 and os.path.isfile(a))
        dashed = next(files, None)
        if dashed is not None and "--" not in _Parser.argv:  # ./ works for an option's value too; -- does not
            message += f" ({dashed} is a file: write it as ./{dashed})"
        self.exit(2, f"streamd: error: {message}\n")


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; only the command named in ``argv`` gets its full options (and its module imported)."""
    parser = _Parser(prog="streamd", description="Streaming real-time audio classifier daemon.")
    parser.add_argument("--version", action="version", version=f"streamd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = _chosen_command(argv)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


# commands that need torch before they can say anything useful: it is imported with Ctrl-C held back
# (run and replay import it themselves, after binding their port, so that a busy port is reported at once)
TORCH_FIRST = frozenset({"train", "evaluate", "classify", "convert"})
# a write that failed for want of room or a device (no file named: standard output, say ``> /dev/full``)
WRITE_FAILURES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})  # not EIO: reads fail with it too


def _start_up(argv: list[str]) -> argparse.Namespace | None:
    """Parse ``argv`` with Ctrl-C held back until the command's module and numpy (and torch, for the
    commands in ``TORCH_FIRST``) are imported: an import cut in half leaves a broken module behind (later
    failing as, e.g., an attribute error), and one cut inside torch's native start-up can abort the
    process. None: interrupted."""
    with held_interrupts() as interrupted:
        parser = build_parser(argv)
        import numpy  # noqa: F401  (every command that handles audio needs it; imported whole, here)

        if _chosen_command(argv) in TORCH_FIRST:
            import torch  # noqa: F401
    if interrupted:
        return None
    _Parser.argv = argv
    return parser.parse_args(argv)


class _Interrupts:
    """Ctrl-C raises ``KeyboardInterrupt`` as usual and is also remembered: native code (torch's, say)
    that meets the interrupt may turn it into an error of its own at once, and an error that comes within
    ``AS_ERROR_S`` of a Ctrl-C is taken for that and not reported. An inherited "ignore" (a job started in
    the background by a shell script) is left as it is."""

    AS_ERROR_S = 1.0
    last: float | None = None  # monotonic time of the last Ctrl-C

    @classmethod
    def install(cls) -> object:
        """Install the handler; returns the one it replaces (None: nothing installed)."""
        cls.last = None
        if threading.current_thread() is not threading.main_thread():
            return None
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            return None
        return signal.signal(signal.SIGINT, cls._handler)

    @classmethod
    def restore(cls, previous: object) -> None:
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)

    @classmethod
    def caused(cls) -> bool:
        """Whether an error now is most likely what a Ctrl-C just became."""
        return cls.last is not None and time.monotonic() - cls.last <= cls.AS_ERROR_S

    @classmethod
    def _handler(cls, signum: int, frame: object) -> None:
        cls.last = time.monotonic()
        raise KeyboardInterrupt


def interrupted_just_now() -> bool:
    """Whether an error now is most likely what a Ctrl-C just became (for a command's own last words)."""
    return _Interrupts.caused()


def entry() -> None:
    """The ``streamd`` console command: ``main`` on ``sys.argv``, then a quick exit (``process_exit``)."""
    from streamd.process_exit import finish

    finish(main())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not _has_descriptor(sys.stderr):  # started with fd 2 closed: messages would go to stdout (for
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - a None stderr) or fail the exit (EBADF)
    for stream in (sys.stdout, sys.stderr):
        _block_writes(stream)
    if logging.lastResort is not None:  # no logging set up: what the stages log reads as every other line
        logging.lastResort.setFormatter(_LogLine())
    from streamd.signals import stop_signals_as_ctrl_c

    previous = _Interrupts.install()
    try:  # SIGTERM / SIGHUP end a command as Ctrl-C does; a daemon's run loop makes them its stop event
        with stop_signals_as_ctrl_c():
            return _main(argv)
    finally:
        _Interrupts.restore(previous)


class _LogLine(logging.Formatter):
    """A log record as streamd's own lines: ``streamd: warning: ...`` / ``streamd: error: ...``."""

    def format(self, record: logging.LogRecord) -> str:
        kind = "error" if record.levelno >= logging.ERROR else "warning"
        return f"streamd: {kind}: {super().format(record)}"


def _has_descriptor(stream: object) -> bool:
    """False when ``stream`` is None or writes to a closed or read-only descriptor (fd 2 closed by the
    caller can be taken by a file opened read-only at start-up: writes fail with EBADF); a stream
    without a descriptor (an in-memory one, a test's capture) counts as usable."""
    import fcntl
    import io

    if stream is None:
        return False
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
    except (io.UnsupportedOperation, AttributeError, ValueError):
        return True
    try:
        mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    except OSError:
        return False
    return mode in (os.O_WRONLY, os.O_RDWR)


def _block_writes(stream: object) -> None:
    """An output left non-blocking by whoever started streamd (some runtimes do that to a shared pipe)
    fails a write with ``BlockingIOError`` whenever its reader is slow, which would stop ``--json`` for
    good: such a descriptor is made blocking, as a program's output is expected to be."""
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
        if not os.get_blocking(fd):
            os.set_blocking(fd, True)
    except (OSError, ValueError, AttributeError):  # no descriptor (a test's capture: UnsupportedOperation)
        pass


def _main(argv: list[str]) -> int:
    try:
        args = _start_up(argv)  # Ctrl-C while torch imports later is a KeyboardInterrupt: no traceback
        if args is None:
            return 130
        return int(args._run(args) or 0)
    except StreamdError as exc:
        if _Interrupts.caused():  # the error is what an interrupt became on its way out: say nothing
            return 130
        print(f"streamd: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError as exc:
        from streamd.sinks import reader_gone

        if reader_gone(sys.stdout):  # the reader of what was printed went away (``... | head``): no error
            return 0
        print(f"streamd: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)  # another pipe
        return 1
    except OSError as exc:  # a path the command could not create, read or write: the user can mend it
        if _Interrupts.caused():
            return 130
        if exc.filename is None and exc.errno in WRITE_FAILURES:  # printed output (> /dev/full) among them
            print(f"streamd: error: output could not be written: {exc.strerror or exc}", file=sys.stderr)
            return 1
        if exc.filename is None or os.environ.get("STREAMD_DEBUG"):
            return _internal_error(exc)
        print(f"streamd: error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # last line of defence: never a traceback for the user
        return 130 if _Interrupts.caused() else _internal_error(exc)


def _internal_error(exc: Exception) -> int:
    """One line for what no command expected (the traceback with ``STREAMD_DEBUG=1``)."""
    if os.environ.get("STREAMD_DEBUG"):
        raise exc
    print(f"streamd: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1
