"""The daemon's command line options (shared by ``run`` and ``replay``) as the top layer of its config.

Unset options leave the config file's value; ``config_from_args`` stacks defaults, ``--config``, a
``--model`` TOML and the explicit options (``streamd.config.config_from_layers``).
"""

from __future__ import annotations

import argparse
from typing import Any

from audio_core.checks import choices_of
from audio_core.shipped_models import MODEL_HELP
from streamd.config import DaemonConfig, config_from_layers, load_model_toml, read_toml
from streamd.config_sections import DEFAULT_ENDPOINT, EngineSection, ModelSection
from streamd.errors import ConfigError
from streamd.path_args import path_arg


def add_daemon_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``replay``; unset ones leave the config file's value."""
    parser.add_argument(
        "--config", type=path_arg, metavar="FILE.toml", help="daemon config (see configs/daemon.toml)"
    )
    parser.add_argument("--model", metavar="NAME|FILE.toml", help=MODEL_HELP)
    parser.add_argument(
        "--checkpoint", type=path_arg, metavar="PATH", help="a .safetensors checkpoint (overrides --model)"
    )
    parser.add_argument(
        "--window", type=float, metavar="S", help="window length in seconds (default: the checkpoint's own)"
    )
    parser.add_argument("--hop", type=float, metavar="S", help="hop between windows in seconds (default 1.0)")
    parser.add_argument(
        "--publish", metavar="ENDPOINT", help=f"ZeroMQ PUB endpoint (default {DEFAULT_ENDPOINT})"
    )
    parser.add_argument("--top-k", type=int, metavar="K", help="labels per prediction (default 5)")
    parser.add_argument(
        "--compute", choices=choices_of(ModelSection, "compute"), help="where the model runs (default auto)"
    )
    parser.add_argument(
        "--precision",
        choices=choices_of(ModelSection, "precision"),
        help="auto (default: bf16 where the hardware runs it natively, else fp32), fp32, bf16 or int8",
    )
    parser.add_argument(
        "--overload",
        choices=choices_of(EngineSection, "overload"),
        help="when the engine falls behind: drop_oldest or block (auto: drop live, block replay)",
    )
    parser.add_argument("--queue-size", type=int, metavar="N", help="engine queue length in windows")
    parser.add_argument("--max-batch", type=int, metavar="N", help="most windows per model call")
    parser.add_argument("--status-interval", type=float, metavar="S", help="seconds between status messages")
    parser.add_argument(
        "--wait-subscriber",
        type=float,
        metavar="S",
        help="wait up to S seconds for a subscriber before starting",
    )
    parser.add_argument(
        "--mqtt",
        metavar="URL",
        help="also publish to MQTT: mqtt://HOST:PORT[/PREFIX] (off: not even if a config file says so)",
    )
    parser.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics (host 127.0.0.1; off: not even if a config file says so)",
    )
    parser.add_argument(
        "--save-clips",
        metavar="DIR",
        help="save each event's audio (FLAC) in DIR (off: not even if a config file says so)",
    )
    parser.add_argument("--no-dashboard", action="store_true", help="do not show the terminal dashboard")
    parser.add_argument("--json", action="store_true", help="print every published message as a JSON line")
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the config, inputs, model, windows, endpoint and integrations, say what would run, and "
        "exit without running (0: all is well)",
    )


_FLAGS: dict[str, str] = {
    "window": "windows.window_s",
    "hop": "windows.hop_s",
    "publish": "publish.endpoint",
    "top_k": "publish.top_k",
    "compute": "model.compute",
    "precision": "model.precision",
    "overload": "engine.overload",
    "queue_size": "engine.queue_size",
    "max_batch": "engine.max_batch",
    "status_interval": "publish.status_interval_s",
    "wait_subscriber": "publish.wait_for_subscriber_s",
    "mqtt": "mqtt.url",
    "metrics": "metrics.listen",
    "save_clips": "clips.dir",
}


_OFF_WHEN_EMPTY = ("mqtt", "metrics", "save_clips")


def hop_given(args: argparse.Namespace) -> bool:
    """Whether the user asked for a hop: ``--hop``, or ``[windows] hop_s`` in ``--config`` or a ``--model``
    TOML (a value equal to the default counts too: it was asked for)."""
    if getattr(args, "hop", None) is not None:
        return True
    files = [getattr(args, "config", None)]
    model = getattr(args, "model", None)
    if model is not None and model.endswith(".toml"):
        files.append(model)
    return any("hop_s" in read_toml(path).get("windows", {}) for path in files if path is not None)


def config_from_args(
    args: argparse.Namespace, command_defaults: dict[str, Any] | None = None
) -> DaemonConfig:
    """Defaults (a command's own ``command_defaults`` over the built-in ones), then ``--config``, then a
    ``--model`` TOML, then explicit options: the one layering of every command's settings."""
    layers: list[tuple[str, dict[str, Any]]] = []
    if command_defaults:
        layers.append(("defaults", command_defaults))
    if getattr(args, "config", None) is not None:
        layers.append((str(args.config), read_toml(args.config)))
    model = getattr(args, "model", None)
    if model is not None:
        if model.endswith(".toml"):
            layers.append((model, load_model_toml(model)))
        else:
            layers.append(("--model", {"model": {"name": model, "checkpoint": None}}))
    cli: dict[str, Any] = {}
    for flag, dotted in _FLAGS.items():
        value = getattr(args, flag, None)
        if flag in _OFF_WHEN_EMPTY and isinstance(value, str):
            if value.strip().lower() == "off":  # turns off what a config file turns on
                value = ""
            elif not value.strip():  # in a config file "" turns it off; here it is an unset variable's doing
                raise ConfigError(
                    f"--{flag.replace('_', '-')} is empty (leave the option out, or give 'off' to turn off "
                    "what a config file turns on)"
                )
        if value is not None:
            section, key = dotted.split(".")
            cli.setdefault(section, {})[key] = value
    if getattr(args, "checkpoint", None) is not None:
        cli.setdefault("model", {})["checkpoint"] = str(args.checkpoint)
    layers.append(("command line", cli))
    return config_from_layers(layers)
