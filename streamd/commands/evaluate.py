"""``streamd evaluate``: a checkpoint's metrics on a labelled dataset, or its streaming behaviour.

Clip-level (default): accuracy, macro-F1, mAP, per-class accuracy and a confusion-matrix PNG on the
chosen folds of a dataset (an experiment config's ``[data]``, an ESC-50-style CSV, class folders, or
AST/AuM JSON datafiles). ``--streaming``: soundscapes of the held-out clips are replayed through the
daemon's pipeline at each ``--hops`` value and scored for per-window accuracy and event onset latency.
Which clips are scored, and what is said about them: ``streamd.evaluate_data``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from audio_core.shipped_models import MODEL_HELP
from models.precision import PRECISIONS
from streamd.errors import ConfigError
from streamd.model_loading import LoadedModel, resolve_model, window_warnings
from streamd.path_args import path_arg

HELP = "evaluate a checkpoint: clip metrics + confusion matrix, or streaming accuracy and onset latency"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="NAME|FILE.toml", default="default", help=MODEL_HELP)
    parser.add_argument(
        "--checkpoint", type=path_arg, metavar="PATH", help="a .safetensors checkpoint (overrides --model)"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="auto (default: bf16 where the hardware runs it natively, else fp32; as classify and replay), "
        "fp32, bf16 or int8",
    )
    data = parser.add_argument_group("data (one of)")
    data.add_argument(
        "--config",
        type=path_arg,
        metavar="CONFIG.toml",
        help="use an experiment config's [data] (default folds: those the checkpoint was held out on)",
    )
    data.add_argument("--esc50", type=path_arg, metavar="CSV", help="an ESC-50-style metadata CSV")
    data.add_argument(
        "--audio-dir", type=path_arg, help="audio folder of --esc50 (default: CSV folder/../audio)"
    )
    data.add_argument(
        "--folders",
        type=path_arg,
        metavar="DIR",
        help="one sub-folder per class (or a CSV of path,label[,split], as streamd train --data reads it)",
    )
    data.add_argument("--num-folds", type=int, help="folds to split --folders into (round-robin per class)")
    data.add_argument(
        "--datafiles", type=path_arg, nargs="+", metavar="JSON", help="AST/AuM datafiles (fold = position)"
    )
    data.add_argument("--label-csv", type=path_arg, help="class_labels_indices.csv for --datafiles")
    parser.add_argument(
        "--folds", type=int, nargs="+", metavar="K", help="score these folds (default: all; see --config)"
    )
    parser.add_argument(
        "--held-out",
        action="store_true",
        help="score only the clips the checkpoint did not train on (every streamd train checkpoint records "
        "its training clips: on its own data, this is what that run held out)",
    )
    parser.add_argument("--out", type=path_arg, help="write report.json, report.md and confusion.png here")
    parser.add_argument(
        "--cache-dir",
        type=path_arg,
        help="fbank cache (default: --config's experiment.cache_dir, as training used it; else .cache/fbank)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    stream = parser.add_argument_group("streaming evaluation")
    stream.add_argument("--streaming", action="store_true", help="replay soundscapes through the pipeline")
    stream.add_argument(
        "--hops", type=float, nargs="+", metavar="S", help="window hops to test (default: 0.5 1 2.5)"
    )
    stream.add_argument("--clips", type=int, default=12, help="clips per soundscape (default 12)")
    stream.add_argument("--soundscapes", type=int, default=1, help="soundscapes to build (default 1)")
    stream.add_argument("--gap-s", type=float, nargs=2, default=[1.0, 3.0], metavar=("MIN", "MAX"))
    stream.add_argument("--seed", type=int, default=0, help="seed of clip choice, order and gaps")
    stream.add_argument(
        "--window-s", type=float, help="window length of windowed models (default: the checkpoint's own)"
    )
    stream.add_argument(
        "--offline", action="store_true", help="use the offline reference instead of the daemon's replay"
    )


DEFAULT_HOPS = (0.5, 1.0, 2.5)  # --hops when not given (a recurrent model takes none: a warning if given)
MAX_GAP_S = 60.0  # background between two clips of a soundscape (held in memory): a minute at most

STREAMING_ONLY = (  # options of the streaming evaluation only
    "hops",
    "clips",
    "soundscapes",
    "gap_s",
    "seed",
    "window_s",
    "offline",
)


def _replay(loaded: LoadedModel):
    """The daemon's own replay of one file, as ``training.streaming_eval`` wants it."""
    from streamd.collect import replay_collect
    from training.soundscape_scoring import predictions_from_messages

    def replay(path: Path, window_s: float | None, hop_s: float):
        return predictions_from_messages(replay_collect([path], loaded, window_s, hop_s, top_k=1))

    return replay


def run(args: argparse.Namespace) -> int:
    from audio_core.windows import checkpoint_window_s, hop_samples
    from streamd.evaluate_data import chosen_clips
    from streamd.window_scoring import window_plan
    from training.evaluate import evaluate_clip_set, report_markdown
    from training.experiment_spec import ExperimentConfigError
    from training.readers import DatasetError
    from training.streaming_eval import stream_table_markdown, streaming_evaluation

    if not args.streaming:  # never silently ignored
        fresh = argparse.ArgumentParser()
        add_arguments(fresh)
        given = [
            f"--{d.replace('_', '-')}" for d in STREAMING_ONLY if getattr(args, d) != fresh.get_default(d)
        ]
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --streaming")
    hops_given, args.hops = args.hops is not None, list(args.hops or DEFAULT_HOPS)
    if args.clips < 1 or args.soundscapes < 1 or args.seed < 0:
        raise ConfigError("--clips and --soundscapes must be at least 1, --seed at least 0")
    if any(h <= 0 for h in args.hops):
        raise ConfigError("--hops must be positive")
    low, high = args.gap_s
    if not 0 <= low <= high <= MAX_GAP_S:  # also false for nan
        limits = f"0 <= MIN <= MAX <= {MAX_GAP_S:g}"
        raise ConfigError(f"--gap-s MIN MAX: seconds with {limits}, got {low:g} {high:g}")
    from streamd.output_folders import writable_folder

    if args.out is not None:
        writable_folder(args.out, "--out")
    cache_dir, cache_is = _cache_dir(args)
    if not args.streaming and cache_dir is not None:  # the clip-level path caches features
        writable_folder(cache_dir, cache_is)
    loaded = resolve_model(args, compute="cpu")
    try:
        for hop in args.hops:
            hop_samples(hop, loaded.info.features)  # the hop rule of every command
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.streaming:
        if args.window_s is not None and not loaded.recurrent:  # can the model take that window?
            for hop in args.hops:
                window_plan(loaded, args.window_s, hop)
        for warning in window_warnings(args.window_s, max(args.hops), loaded, hop_given=hops_given):
            print(f"streamd: warning: {warning}", file=sys.stderr, flush=True)
    try:
        clip_set = chosen_clips(args, loaded, None if args.streaming else checkpoint_window_s(loaded.info))
    except (ExperimentConfigError, DatasetError) as exc:
        raise ConfigError(str(exc)) from None
    if args.streaming and args.clips > len(clip_set.clips):
        held = len(clip_set.clips)
        note = f"--clips {args.clips}: the chosen folds hold {held} clips; each soundscape has them all"
        print(f"streamd: note: {note}", file=sys.stderr, flush=True)
    try:
        if args.streaming:
            results = streaming_evaluation(
                loaded.model,
                loaded.info,
                None if args.offline else _replay(loaded),
                clip_set,
                args.hops,
                args.clips,
                args.soundscapes,
                (args.gap_s[0], args.gap_s[1]),
                args.seed,
                args.out,
                args.window_s,
                loaded.precision,
            )
            if args.json:
                print(json.dumps(results, indent=1))
            else:
                print(stream_table_markdown(results))
            return 0
        report = evaluate_clip_set(
            loaded.model, loaded.info, clip_set, args.out, cache_dir, precision=loaded.precision
        )
    except ValueError as exc:  # unreadable audio, labels the model does not know
        raise ConfigError(str(exc)) from None
    print(json.dumps(report, indent=1) if args.json else report_markdown(report, clip_set.name), end="")
    return 0


DEFAULT_CACHE = Path(".cache/fbank")


def _cache_dir(args: argparse.Namespace) -> tuple[Path | None, str]:
    """Where features are cached (None: nowhere) and what said so: ``--cache-dir``, else the ``--config``
    experiment's ``cache_dir`` (the cache its training filled; empty there: none), else ``.cache/fbank``."""
    if args.cache_dir is not None:
        return args.cache_dir, "--cache-dir"
    if args.config:
        from training.experiment_spec import ExperimentConfigError, load_experiment

        try:
            return load_experiment(args.config, need_model=False).cache_dir, "experiment.cache_dir"
        except ExperimentConfigError as exc:
            raise ConfigError(str(exc)) from None
    return DEFAULT_CACHE, "--cache-dir"
