"""``streamd train CONFIG.toml``: train a model, or cross-validate it over the data's folds, from a config."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamd.errors import CheckpointError, ConfigError

HELP = "train (or k-fold cross-validate) a model from a TOML experiment config (see configs/train/)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, metavar="CONFIG.toml", help="experiment config")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.epochs=2 (TOML value; repeatable)",
    )
    parser.add_argument("--mode", choices=("single", "cv", "full"), help="override experiment.mode")
    parser.add_argument("--out", type=Path, help="override experiment.output_dir")
    parser.add_argument("--fresh", action="store_true", help="ignore saved training state (default: resume)")
    parser.add_argument(
        "--init",
        metavar="CHECKPOINT|NAME",
        help="fine-tune: start from a streamd checkpoint or a shipped model's name (default, recurrent)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from models.checkpoint import CheckpointLoadError
    from training.experiment import ExperimentConfigError, load_experiment, run_experiment, summary_markdown
    from training.readers import DatasetError

    overrides = list(args.overrides)
    if args.mode:
        overrides.append(f'experiment.mode="{args.mode}"')
    try:
        exp = load_experiment(args.config, overrides, init=args.init)
        if exp.init_notes:
            print(f"fine-tuning recipe: {', '.join(exp.init_notes)} (--set train.KEY=VALUE to change)")
        if args.out:
            exp.output_dir = args.out
        summary = run_experiment(exp, resume=not args.fresh, progress=not args.no_progress)
    except (ExperimentConfigError, DatasetError) as exc:
        raise ConfigError(str(exc)) from None
    except CheckpointLoadError as exc:
        raise CheckpointError(str(exc)) from None
    except ValueError as exc:  # unreadable audio, bad values: one line naming the problem
        raise ConfigError(str(exc)) from None
    print(summary_markdown(summary), end="")
    print(f"results in {exp.output_dir}")
    return 0
