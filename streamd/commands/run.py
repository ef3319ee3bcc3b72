"""``streamd run``: classify live audio from one or more input devices until Ctrl-C / SIGTERM.

``execute`` is shared with ``streamd replay``: config, model, publisher with its sinks (dashboard,
``--json`` printer), signal handling, and the daemon itself.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from streamd.config import DaemonConfig, add_daemon_arguments, config_from_args
from streamd.daemon import Daemon, print_errors
from streamd.fanin import add_fanin_arguments
from streamd.model_loading import load_configured_model
from streamd.security import add_security_arguments
from streamd.sources import DeviceSource, Source

HELP = "classify live audio from input devices and publish every result"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        action="append",
        metavar="DEVICE",
        help="'mic' (the default input), a device index, or part of its name; repeat for several streams",
    )
    add_daemon_arguments(parser)
    add_security_arguments(parser)
    add_fanin_arguments(parser)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` (the daemon then shuts down in order) while inside the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def execute(
    args: argparse.Namespace, make_sources: Callable[[DaemonConfig], list[Source]], *, live: bool
) -> int:
    """Build everything from the arguments and run until done (replay) or stopped (live)."""
    from streamd.fanin import apply_stream_prefix, make_publisher

    cfg = config_from_args(args)
    sources = make_sources(cfg)
    apply_stream_prefix(args, sources)
    model = load_configured_model(cfg.model)
    publisher = make_publisher(args, cfg.publish.endpoint, cfg.publish.queue_size)
    daemon = Daemon(cfg, sources, model, publisher)
    if args.json:
        from streamd.sinks import JsonLinesSink

        publisher.add_sink(JsonLinesSink(sys.stdout))
    dashboard = None
    if not args.no_dashboard:
        from rich.console import Console

        from streamd.dashboard import Dashboard

        dashboard = Dashboard(console=Console(stderr=args.json), top_k=cfg.publish.top_k)
        publisher.add_sink(dashboard.sink)
        dashboard.start()
    stop = threading.Event()
    try:
        with stop_on_signals(stop):
            if live:
                daemon.run_forever(stop)
            else:
                daemon.run_until_done(stop)
    finally:
        if dashboard is not None:
            dashboard.stop()
    print_errors(daemon.errors)
    return 1 if daemon.errors else 0


def _device_sources(devices: list[str]) -> Callable[[DaemonConfig], list[Source]]:
    def make(cfg: DaemonConfig) -> list[Source]:
        return [DeviceSource(d, block_s=cfg.capture.block_s, ring_s=cfg.capture.ring_s) for d in devices]

    return make


def run(args: argparse.Namespace) -> int:
    return execute(args, _device_sources(args.device or ["mic"]), live=True)
