"""``streamd proxy``: one place for many daemons to publish to and for subscribers to connect to.

Daemons run with ``--connect-proxy FRONTEND`` (their stream names then start with ``--stream-prefix``,
the host name by default); subscribers (``streamd listen --connect BACKEND``) hear every daemon. Runs until
Ctrl-C / SIGTERM; ``--capture FILE`` appends every message passing through to FILE as JSON lines (exit 1
if the capture failed on the way; forwarding never stops for it).
"""

from __future__ import annotations

import argparse
import sys
import threading

from streamd.path_args import path_arg
from streamd.proxy import Proxy
from streamd.security import add_security_arguments, security_from_args
from streamd.signals import stop_on_signals

HELP = "forward many daemons' messages to many subscribers (ZeroMQ XSUB/XPUB proxy)"
DEFAULT_FRONTEND = "tcp://127.0.0.1:5557"
DEFAULT_BACKEND = "tcp://127.0.0.1:5556"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--frontend",
        default=DEFAULT_FRONTEND,
        metavar="ENDPOINT",
        help=f"where daemons connect (--connect-proxy; default {DEFAULT_FRONTEND})",
    )
    parser.add_argument(
        "--backend",
        default=DEFAULT_BACKEND,
        metavar="ENDPOINT",
        help=f"where subscribers connect (default {DEFAULT_BACKEND}, the daemon's usual port)",
    )
    parser.add_argument(
        "--capture", type=path_arg, metavar="FILE", help="append every message to FILE as JSON lines"
    )
    add_security_arguments(parser)


def run(args: argparse.Namespace) -> int:
    proxy = Proxy(args.frontend, args.backend, security=security_from_args(args), capture=args.capture)
    proxy.start()
    frontend, backend = proxy.endpoints
    print(f"streamd proxy: daemons -> {frontend}, subscribers -> {backend}", file=sys.stderr, flush=True)
    stop = threading.Event()
    try:
        with stop_on_signals(stop):
            while not stop.wait(0.2):
                pass
    finally:
        proxy.stop()
    if args.capture is None:
        return 0
    note = f"; {proxy.malformed} malformed skipped" if proxy.malformed else ""
    if proxy.capture_error is not None:
        note += (
            f"; the capture stopped at a write error ({proxy.capture_error}): "
            f"{proxy.not_captured} message(s) not captured"
        )
        if proxy.capture_trimmed:
            note += " (the line it cut short was removed: the file ends with the last whole line)"
    print(f"streamd proxy: captured {proxy.captured} message(s) to {args.capture}{note}", file=sys.stderr)
    return 1 if proxy.capture_error is not None else 0
