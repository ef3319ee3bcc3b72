"""``streamd run``: classify live audio from one or more input devices until Ctrl-C / SIGTERM.

``execute`` is shared with ``streamd replay``: config, model, publisher with its sinks (dashboard,
``--json`` printer), signal handling, and the daemon itself. torch (the daemon, the model) is imported
only once the config and the inputs have been checked, so a bad argument is reported at once.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from streamd.config import DaemonConfig, name_window_source
from streamd.config_cli import add_daemon_arguments, config_from_args, hop_given
from streamd.device_source import DeviceSource
from streamd.errors import ConfigError
from streamd.fanin import add_fanin_arguments
from streamd.held_interrupts import import_then_honour_interrupts
from streamd.input_devices import check_distinct_devices
from streamd.integrations import attach as attach_integrations
from streamd.network_source import NetworkSource
from streamd.network_url import is_url
from streamd.security import add_security_arguments
from streamd.signals import stop_on_signals
from streamd.sinks import is_terminal
from streamd.sources import Source

if TYPE_CHECKING:
    from streamd.daemon import Daemon
    from streamd.integrations import Integrations
    from streamd.publisher import Publisher

HELP = "classify live audio from input devices and publish every result"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        action="append",
        metavar="DEVICE",
        help="'mic' (the default input), a device index, part of its name, or a URL (rtsp://, http://, "
        "tcp://, ...); repeat for several streams",
    )
    add_daemon_arguments(parser)
    add_security_arguments(parser)
    add_fanin_arguments(parser)


def execute(
    args: argparse.Namespace, make_sources: Callable[[DaemonConfig], list[Source]], *, live: bool
) -> int:
    """Build everything from the arguments and run until done (replay) or stopped (live)."""
    from streamd.fanin import apply_stream_prefix, make_publisher

    cfg = config_from_args(args)
    if cfg.metrics.listen:
        from streamd.config import name_source
        from streamd.metrics import check_metrics_exposure

        try:
            check_metrics_exposure(cfg.metrics.listen, bool(getattr(args, "insecure", False)))
        except ConfigError as exc:  # a config file's [metrics] listen is named as that file's setting
            raise name_source(cfg, exc) from None
    sources = make_sources(cfg)
    apply_stream_prefix(args, sources)
    block = cfg.overload_policy(live) == "block"  # a replay's results wait for room, never dropped
    publisher = make_publisher(args, cfg.publish.endpoint, cfg.publish.queue_size, cfg.publish.sndhwm, block)
    if args.check:
        publisher.check()  # the endpoint's form and security; a running service may hold its port
    else:
        publisher.start()  # bind first: a busy port is reported before the model loads
    try:
        import_then_honour_interrupts("torch")  # Ctrl-C inside torch's start-up would kill the process
        from audio_core.windows import checkpoint_window_s
        from streamd.daemon import Daemon
        from streamd.events import sparse_hits_warning
        from streamd.model_loading import resolve_model, window_warnings
        from streamd.model_runner import threads_warning
        from streamd.window_scoring import window_plan

        model = resolve_model(args, daemon_config=True)
        try:
            if cfg.windows.window_s and not model.recurrent:  # a window of the user's own: does it fit?
                window_plan(model, cfg.windows.window_s, cfg.windows.hop_s)
            daemon = Daemon(cfg, sources, model, publisher)  # checks the window plan: errors come first
        except ConfigError as exc:  # named by the file or option that set the window or hop
            raise name_window_source(cfg, exc) from None
        asked = hop_given(args)  # a recurrent model steps per column
        warnings = window_warnings(cfg.windows.window_s, cfg.windows.hop_s, model, hop_given=asked)
        if model.device.type == "cpu" and (too_many := threads_warning(cfg.engine.threads)):
            warnings.append(too_many)
        window_s = cfg.windows.window_s or checkpoint_window_s(model.info)
        if not model.recurrent and (sparse := sparse_hits_warning(cfg.events, cfg.windows.hop_s, window_s)):
            warnings.append(sparse)
        for warning in warnings:
            print(f"streamd: warning: {warning}", file=sys.stderr, flush=True)
        # a bad --save-clips folder fails here
        integrations = attach_integrations(cfg, daemon, publisher, start=not args.check)
    except BaseException:
        publisher.stop(timeout=0.0)
        raise
    if args.check:
        return _report_check(args, cfg, daemon, integrations, publisher)
    stop = threading.Event()
    json_sink = None
    if args.json:
        from streamd.sinks import JsonLinesSink

        json_sink = JsonLinesSink(sys.stdout, on_reader_gone=stop.set)  # `| head -1`: the run ends there
        publisher.add_sink(json_sink)
    dashboard = None
    shown_on = sys.stderr if args.json else sys.stdout
    if not args.no_dashboard and shown_on is not None and not (args.json and is_terminal(sys.stdout)):
        from streamd.dashboard_live import Dashboard

        dashboard = Dashboard(stderr=args.json, top_k=cfg.publish.top_k)
        publisher.add_sink(dashboard.sink)
    from streamd.start_up_gc import freeze_start_up_objects

    # a stop must not wait on a blocking publisher whose sink is stuck (a reader that stopped reading)
    releaser = threading.Thread(target=_release_on_stop, args=(stop, publisher), daemon=True)
    try:  # from the dashboard's start: a Ctrl-C at any point still restores the terminal (its cursor)
        if dashboard is not None:
            dashboard.start()
        freeze_start_up_objects()
        releaser.start()
        with stop_on_signals(stop):
            if live:
                daemon.run_forever(stop)
            else:
                daemon.run_until_done(stop)
    finally:
        stop.set()  # the run is over: the releaser thread ends too
        if dashboard is not None:
            dashboard.stop()
        integrations.close()
    if json_sink is not None and json_sink.failure:
        daemon.errors.append(
            f"--json output failed ({json_sink.failure}): {json_sink.unwritten} message(s) not written"
        )
    if dashboard is not None and dashboard.failure:  # the terminal went away or its disk filled
        daemon.errors.append(f"the dashboard could not write its output: {dashboard.failure}")
    if sys.stderr is not None:  # closed: nowhere to say it (never into stdout's JSON)
        for warning in daemon.warnings:  # one line each, warnings first
            print(f"streamd: warning: {warning}", file=sys.stderr)
        for error in daemon.errors:
            print(f"streamd: error: {error}", file=sys.stderr)
    return 1 if daemon.errors else 0


def _report_check(
    args: argparse.Namespace,
    cfg: DaemonConfig,
    daemon: Daemon,
    integrations: Integrations,
    publisher: Publisher,
) -> int:
    """``--check``: everything was built without error; say what would run, release it all, exit 0 (1,
    with the run's own error lines, where a source already knows the run will fail: a truncated file).
    The publish endpoint and the metrics port are bound on trial and released (one in use is said, not
    an error: the running service may hold it); MQTT is not connected (``streamd.bind_probe``)."""
    from streamd.bind_probe import probe_endpoint, probe_listen
    from streamd.metrics import parse_listen

    try:
        for stream in daemon.streams:
            print(f"streamd: check: {stream.name}: {daemon.start_message(stream)}")
        proxy = getattr(args, "connect_proxy", None)
        where = f"connecting to the proxy {proxy}" if proxy else f"publishing on {cfg.publish.endpoint}"
        if not proxy and (note := probe_endpoint(cfg.publish.endpoint)):
            print(f"streamd: check: {cfg.publish.endpoint}: {note}")
        if cfg.metrics.listen and (note := probe_listen(*parse_listen(cfg.metrics.listen), "--metrics")):
            print(f"streamd: check: metrics {cfg.metrics.listen}: {note}")
    finally:
        integrations.close()
        publisher.stop(timeout=0.0)
    failures = [failure for stream in daemon.streams if (failure := stream.source.known_failure())]
    for failure in failures:  # as the run would end
        print(f"streamd: error: {failure}", file=sys.stderr)
    if failures:
        return 1
    print(f"streamd: check passed: {len(daemon.streams)} stream(s), {where}")
    return 0


def _release_on_stop(stop: threading.Event, publisher: Publisher) -> None:
    """Once a stop is asked for, the publisher no longer waits for room (``Publisher.release``)."""
    stop.wait()
    publisher.release()


def _device_sources(devices: list[str]) -> Callable[[DaemonConfig], list[Source]]:
    def make(cfg: DaemonConfig) -> list[Source]:
        c = cfg.capture
        check_distinct_devices(devices, is_url)
        return [
            NetworkSource(d, block_s=c.block_s, ring_s=c.ring_s, watchdog_s=c.watchdog_s)
            if is_url(d)
            else DeviceSource(d, block_s=c.block_s, ring_s=c.ring_s)
            for d in devices
        ]

    return make


def run(args: argparse.Namespace) -> int:
    return execute(args, _device_sources(args.device or ["mic"]), live=True)
