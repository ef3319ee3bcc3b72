"""``streamd train CONFIG.toml``: train a model, or cross-validate it over the data's folds, from a config."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from audio_core.compute import COMPUTES
from audio_core.shipped_models import SHIPPED_MODELS
from streamd.errors import CheckpointError, ConfigError
from streamd.path_args import path_arg

HELP = (
    "train (or k-fold cross-validate) a model from a TOML experiment config (see configs/train/), "
    "or on your own data with --data DIR"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=path_arg, nargs="?", metavar="CONFIG.toml", help="experiment config")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.epochs=2 (TOML value; repeatable)",
    )
    parser.add_argument("--mode", choices=("single", "cv", "full"), help="override experiment.mode")
    parser.add_argument("--out", type=path_arg, help="override experiment.output_dir")
    parser.add_argument("--fresh", action="store_true", help="ignore saved training state (default: resume)")
    parser.add_argument(
        "--accept-data-change",
        action="store_true",
        help="resume a saved state even though its training data's digest differs (the same clips' "
        "features from an older streamd on another machine); model and settings must still match",
    )
    parser.add_argument(
        "--init",
        metavar="CHECKPOINT|NAME",
        help="fine-tune: start from a streamd checkpoint or a shipped model's name "
        f"({', '.join(SHIPPED_MODELS)})",
    )
    parser.add_argument(
        "--compute",
        choices=COMPUTES,
        help="where training runs: auto (default: a CUDA device when present), cpu or cuda "
        "(the same as --set train.compute=...)",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars: one plain line per epoch instead (as when the output is redirected)",
    )
    add_own_data_arguments(parser)


def add_own_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data DIR`` and the few options it takes (see docs/your-own-data.md)."""
    own = parser.add_argument_group("your own data (no config: everything else is derived)")
    own.add_argument("--data", type=path_arg, metavar="DIR", help="class folders, split folders or a CSV")
    own.add_argument(
        "--recipe", choices=("cnn", "recurrent", "ast"), help="default cnn (with --init: the init model's)"
    )
    own.add_argument("--window", type=float, metavar="S", help="window length (default: from clip durations)")
    budget = own.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, metavar="M", help="training time budget (default 15)")
    budget.add_argument("--epochs", type=int, metavar="N", help="train exactly N epochs")
    own.add_argument(
        "--print-config",
        action="store_true",
        help="print the equivalent TOML and stop (with CONFIG.toml: it after --init, --set, --mode, --out; "
        "with --data: after reading the clips, caching their features and, for --minutes, timing a step)",
    )
    own.add_argument("--no-background", action="store_true", help="no background (no-class) examples")


def run_own_data(args: argparse.Namespace) -> int:
    """``streamd train --data DIR``."""
    from models.metadata_check import MAX_TARGET_FRAMES
    from streamd.output_folders import usable_folder_path
    from training.derive import MIN_WINDOW_S
    from training.own_choices import set_value
    from training.own_train import OwnOptions, run_own_data

    max_window_s = MAX_TARGET_FRAMES / 100  # 10-ms frames: the daemon's longest window

    for name in ("window", "minutes", "epochs"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"--{name} must be a positive finite number, got {value}")
    if args.window is not None and not MIN_WINDOW_S <= args.window <= max_window_s:
        raise ConfigError(
            f"--window must be between {MIN_WINDOW_S:g} s (the models' smallest input) and "
            f"{max_window_s:g} s, got {args.window:g}"
        )
    if args.out is not None and not args.print_config:
        usable_folder_path(args.out, "--out")
    opts = OwnOptions(
        data=args.data,
        out=args.out,
        recipe=args.recipe,
        init=args.init,
        overrides=list(args.overrides),
        compute=args.compute or "auto",
        window_s=args.window,
        minutes=args.minutes,
        epochs=args.epochs,
        background=not args.no_background,
        print_config=args.print_config,
        resume=not args.fresh,
        progress=not args.no_progress,
        accept_data_change=args.accept_data_change,
    )
    cache_is = "the feature cache (in the working folder; run from a writable one)"
    # one cache for what is derived and what is trained: read as the config reads --set (set_table)
    cache = set_value(opts, "experiment.cache_dir")
    if isinstance(cache, str):  # (another type is refused with the rest of the config)
        opts.cache_dir, cache_is = (Path(cache) if cache else None), "--set experiment.cache_dir"
    if opts.cache_dir is not None:  # features are cached there: said before any is made
        usable_folder_path(opts.cache_dir, cache_is)
    run_own_data(opts)
    return 0


def _overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` values, then ``--compute`` as the ``train.compute`` key it stands for."""
    overrides = list(args.overrides)
    if args.compute:
        overrides.append(f'train.compute="{args.compute}"')
    return overrides


def run(args: argparse.Namespace) -> int:
    started = time.time()
    try:  # SIGTERM (a service stopped, ``kill``) and SIGHUP end it as Ctrl-C (``streamd.cli``)
        return _run(args)
    except KeyboardInterrupt:
        from training.resume import interrupted_line

        since = started if args.fresh else None  # --fresh: the states from before it are not this run's
        print(interrupted_line(_output_dir(args), fresh=args.fresh, since=since), flush=True)
        return 130


def _output_dir(args: argparse.Namespace) -> Path | None:
    """Where this command saves training state (for the Ctrl-C message)."""
    from training.experiment_spec import ExperimentConfigError, load_experiment

    if args.out:
        return args.out
    if args.data:
        return Path("runs") / (args.data.stem if args.data.is_file() else args.data.resolve().name)
    try:
        return load_experiment(args.config).output_dir if args.config else None
    except (ExperimentConfigError, OSError):
        return None


def _run(args: argparse.Namespace) -> int:
    from models.checkpoint import CheckpointLoadError
    from streamd.output_folders import usable_folder_path
    from training.experiment import run_experiment
    from training.experiment_spec import ExperimentConfigError, load_experiment
    from training.experiment_summary import summary_markdown
    from training.readers import DatasetError

    if args.accept_data_change and args.fresh:  # never silently ignored
        raise ConfigError("--accept-data-change resumes a saved state and --fresh starts over: give one")
    _refuse_flag_and_set(args)
    if args.data is not None:
        if args.config is not None:
            raise ConfigError("give either CONFIG.toml or --data DIR, not both")
        if args.mode:  # never silently ignored
            raise ConfigError("--mode is for CONFIG.toml; --data trains one model and reports held-out clips")
        try:
            return run_own_data(args)
        except (ExperimentConfigError, DatasetError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
        except CheckpointLoadError as exc:
            raise CheckpointError(str(exc)) from None
    if args.config is None:
        raise ConfigError("streamd train needs CONFIG.toml or --data DIR (see docs/your-own-data.md)")
    _refuse_own_data_options(args)
    overrides = _overrides(args)
    if args.mode:
        overrides.append(f'experiment.mode="{args.mode}"')
    if args.print_config:
        return print_resolved_config(args.config, overrides, args.init, args.out)
    try:
        exp = load_experiment(args.config, overrides, init=args.init)
        if exp.init_notes:
            print(f"fine-tuning recipe: {', '.join(exp.init_notes)} (--set train.KEY=VALUE to change)")
        if args.out:  # the output folder, also in the config.json it writes (as --print-config shows it)
            exp.output_dir = args.out
            exp.raw.setdefault("experiment", {})["output_dir"] = str(args.out)
        usable_folder_path(exp.output_dir, "--out" if args.out else "experiment.output_dir")
        if exp.cache_dir is not None:
            usable_folder_path(exp.cache_dir, "experiment.cache_dir")
        summary = run_experiment(
            exp,
            resume=not args.fresh,
            progress=not args.no_progress,
            accept_data_change=args.accept_data_change,
        )
    except (ExperimentConfigError, DatasetError) as exc:
        raise ConfigError(str(exc)) from None
    except CheckpointLoadError as exc:
        raise CheckpointError(str(exc)) from None
    except ValueError as exc:  # unreadable audio, bad values: one line naming the problem
        raise ConfigError(str(exc)) from None
    print(summary_markdown(summary), end="")
    print(f"results in {exp.output_dir}")
    return 0


FLAG_KEYS = {  # options that stand for a config key: given both ways, neither silently wins
    "compute": ("--compute", "train.compute"),
    "mode": ("--mode", "experiment.mode"),
    "out": ("--out", "experiment.output_dir"),
    "init": ("--init", "model.init"),
}


def _refuse_flag_and_set(args: argparse.Namespace) -> None:
    """An option and a ``--set`` of the key it stands for, both given, are refused (``--epochs`` with
    ``--set train.epochs`` is refused by own data's choices the same way)."""
    from training.experiment_spec import ExperimentConfigError, apply_overrides

    try:
        table = apply_overrides({}, list(args.overrides))
    except ExperimentConfigError as exc:
        raise ConfigError(str(exc)) from None
    for name, (flag, key) in FLAG_KEYS.items():
        section, _, field = key.partition(".")
        inner = table.get(section)
        if getattr(args, name) is not None and isinstance(inner, dict) and field in inner:
            raise ConfigError(f"{flag} and --set {key} both given: give one of them")


OWN_DATA_ONLY = {
    "recipe": "--recipe",
    "window": "--window",
    "minutes": "--minutes",
    "epochs": "--epochs",
    "no_background": "--no-background",
}


def _refuse_own_data_options(args: argparse.Namespace) -> None:
    """Options that only ``--data`` reads are refused with a config, never silently ignored."""
    given = [flag for name, flag in OWN_DATA_ONLY.items() if getattr(args, name) not in (None, False)]
    if given:
        raise ConfigError(
            f"{', '.join(given)} only {'applies' if len(given) == 1 else 'apply'} to --data DIR; "
            "with CONFIG.toml set keys instead, e.g. --set train.epochs=30"
        )


def print_resolved_config(config: Path, overrides: list[str], init: str | None, out: Path | None) -> int:
    """``streamd train CONFIG.toml --print-config``: the checked config as it would run, as TOML."""
    from audio_core.compute import ComputeError, resolve_device
    from training.derive import toml_text
    from training.experiment_spec import ExperimentConfigError, parse_experiment, resolved_document

    try:
        doc, _ = resolved_document(config, overrides, init)
        if out is not None:
            doc.setdefault("experiment", {})["output_dir"] = str(out)
        exp = parse_experiment(doc, str(config))  # checked before printed
        resolve_device(exp.train.compute, "train.compute")  # refused as the run refuses it (no CUDA device)
    except (ExperimentConfigError, ComputeError) as exc:
        raise ConfigError(str(exc)) from None
    header = f"{config} as it would run (--init, --set, --mode and --out applied)"
    print(toml_text(doc, header=header), end="")
    return 0
