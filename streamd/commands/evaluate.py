"""``streamd evaluate``: a checkpoint's metrics on a labelled dataset, or its streaming behaviour.

Clip-level (default): accuracy, macro-F1, mAP, per-class accuracy and a confusion-matrix PNG on the
chosen folds of a dataset (an experiment config's ``[data]``, an ESC-50-style CSV, class folders, or
AST/AuM JSON datafiles). ``--streaming``: soundscapes of the held-out clips are replayed through the
daemon's pipeline at each ``--hops`` value and scored for per-window accuracy and event onset latency.
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
    data.add_argument("--folders", type=path_arg, metavar="DIR", help="one sub-folder per class")
    data.add_argument("--num-folds", type=int, help="folds to split --folders into (round-robin per class)")
    data.add_argument(
        "--datafiles", type=path_arg, nargs="+", metavar="JSON", help="AST/AuM datafiles (fold = position)"
    )
    data.add_argument("--label-csv", type=path_arg, help="class_labels_indices.csv for --datafiles")
    parser.add_argument(
        "--folds", type=int, nargs="+", metavar="K", help="score these folds (default: all; see --config)"
    )
    parser.add_argument("--out", type=path_arg, help="write report.json, report.md and confusion.png here")
    parser.add_argument(
        "--cache-dir", type=path_arg, default=Path(".cache/fbank"), help="fbank cache (default .cache/fbank)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    stream = parser.add_argument_group("streaming evaluation")
    stream.add_argument("--streaming", action="store_true", help="replay soundscapes through the pipeline")
    stream.add_argument(
        "--hops", type=float, nargs="+", default=[0.5, 1.0, 2.5], metavar="S", help="window hops to test"
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


MAX_GAP_S = 60.0  # background between two clips of a soundscape (held in memory): a minute at most

SOURCE_OPTIONS = {"audio_dir": "esc50", "num_folds": "folders", "label_csv": "datafiles"}  # option: source

STREAMING_ONLY = (  # options of the streaming evaluation only
    "hops",
    "clips",
    "soundscapes",
    "gap_s",
    "seed",
    "window_s",
    "offline",
)


def _dataset(args: argparse.Namespace, loaded: LoadedModel):
    """The clip set the data options name, its folds chosen (``--folds``, or for ``--config`` the folds
    the checkpoint was held out on)."""
    from training.experiment_spec import load_experiment
    from training.readers import read_dataset

    chosen = [name for name in ("config", "esc50", "folders", "datafiles") if getattr(args, name)]
    if len(chosen) != 1:
        raise ConfigError("give exactly one of --config, --esc50, --folders or --datafiles")
    for option, source in SOURCE_OPTIONS.items():  # never silently ignored
        if getattr(args, option) is not None and source not in chosen:
            raise ConfigError(f"--{option.replace('_', '-')}: only with --{source}")
    if args.config:
        exp = load_experiment(args.config)
        clip_set = read_dataset(exp.reader, **exp.reader_options)
        if exp.folds is not None:
            clip_set = _select_folds(clip_set, exp.folds)
        return _select_folds(clip_set, _config_folds(exp, clip_set, loaded, args.folds))
    clip_set = _other_dataset(args, read_dataset)
    # a checkpoint that records no data set predates own-data training: it was trained on ESC-50
    if (loaded.info.extra.get("dataset") or ("esc50" if args.esc50 else None)) == clip_set.name:
        _warn_if_trained_on(loaded, clip_set, args.folds, clip_set.name)
    return _select_folds(clip_set, args.folds)


def _config_folds(exp, clip_set, loaded: LoadedModel, chosen: list[int] | None) -> list[int] | None:
    """The folds to score with ``--config``: ``chosen`` (``--folds``), else the ones the checkpoint records
    as held out, else the config's ``val_folds`` (mode "single"), else all; a warning when the checkpoint
    trained on any of them (it records its training folds)."""
    extra = loaded.info.extra
    if extra.get("dataset", clip_set.name) != clip_set.name:  # trained on other data: its folds are not these
        return chosen or (exp.val_folds if exp.mode == "single" else None)
    recorded = list(extra.get("val_folds") or [])
    folds = chosen or recorded or (exp.val_folds if exp.mode == "single" else None)
    if not _warn_if_trained_on(loaded, clip_set, folds, exp.source) and folds and not chosen:
        whose = "the checkpoint's held-out" if recorded else "the config's val_folds:"
        note = f"scoring {whose} fold(s) {folds} (--folds chooses others)"
        print(f"streamd: note: {note}", file=sys.stderr, flush=True)
    return folds


def _warn_if_trained_on(loaded: LoadedModel, clip_set, folds: list[int] | None, source: str) -> bool:
    """Warn (and True) when the checkpoint records training on any of ``folds`` (None: all) of this data."""
    seen = sorted(set(loaded.info.extra.get("train_folds") or []) & set(folds or clip_set.folds()))
    if seen:
        note = f"the checkpoint trained on fold(s) {seen} of {source}: these figures are not held out"
        print(f"streamd: warning: {note}", file=sys.stderr, flush=True)
    return bool(seen)


def _other_dataset(args: argparse.Namespace, read_dataset):
    """The clip set of ``--esc50``, ``--folders`` or ``--datafiles``."""
    if args.esc50:
        return read_dataset("esc50", csv_path=args.esc50, audio_dir=args.audio_dir)
    if args.folders:  # every file is checked below, the unusable ones left out with a warning
        from training.readers import read_class_folders_as_found

        problems: list[str] = []
        clip_set = read_class_folders_as_found(args.folders, num_folds=args.num_folds, problems=problems)
        for problem in problems:  # the lines train --data prints for the same folders
            print(f"streamd: warning: {problem}", file=sys.stderr, flush=True)
        return clip_set
    if not args.label_csv:
        raise ConfigError("--datafiles needs --label-csv")
    return read_dataset("json", datafiles=args.datafiles, label_csv=args.label_csv)


def _select_folds(clip_set, folds: list[int] | None):
    if folds is None:
        return clip_set
    if not clip_set.folds():
        raise ConfigError("--folds: these class folders have no folds (give --num-folds to make some)")
    missing = sorted(set(folds) - set(clip_set.folds()))
    if missing:
        raise ConfigError(f"folds {missing} have no clips (the dataset has folds {clip_set.folds()})")
    return clip_set.subset(folds=folds)


def _usable_clips(clip_set, window_s: float | None = None):
    """Class folders hold whatever their owner put there: files that cannot be decoded are left out with a
    warning, as ``streamd train --data`` leaves them out (``training.own_data.check_files``); with
    ``window_s``, clips longer than the model's window are counted in a note (scored by the mean of their
    windows, as ``streamd classify`` and training's reports score them)."""
    from training.audio_folders import unusable_class_note
    from training.clips import Clip, ClipSet
    from training.own_data import check_files, left_out_note

    durations, broken = check_files(Path(clip.path) for clip in clip_set.clips)
    longer = sum(1 for d in durations.values() if window_s and d > window_s + 0.01)
    if longer:
        print(
            f"streamd: note: {longer} clip(s) are longer than the model's {window_s:g}-s window: each is "
            "scored by the mean of its windows, as streamd classify scores a file",
            file=sys.stderr,
            flush=True,
        )
    if broken:
        print(f"streamd: warning: {left_out_note(broken)}", file=sys.stderr, flush=True)
    kept = [clip for clip in clip_set.clips if Path(clip.path) in durations]
    if not kept:
        raise ConfigError(f"{clip_set.name}: none of its {len(clip_set.clips)} file(s) is usable")
    used = sorted({t for clip in kept for t in clip.targets})
    if not broken and len(used) == len(clip_set.labels):
        return clip_set
    for index, label in enumerate(clip_set.labels):  # a class left with no clip is left out, as in training
        files = sum(1 for clip in clip_set.clips if index in clip.targets)
        if index not in used and files:  # none in the chosen folds: nothing to say
            print(f"streamd: warning: {unusable_class_note(label, files)}", file=sys.stderr, flush=True)
    rank = {old: new for new, old in enumerate(used)}
    kept = [Clip(c.path, tuple(rank[t] for t in c.targets), c.fold) for c in kept]
    labels = [clip_set.labels[i] for i in used]
    return ClipSet(kept, labels, multi_label=clip_set.multi_label, name=clip_set.name)


def _replay(loaded: LoadedModel):
    """The daemon's own replay of one file, as ``training.streaming_eval`` wants it."""
    from streamd.collect import replay_collect
    from training.soundscape_scoring import predictions_from_messages

    def replay(path: Path, window_s: float | None, hop_s: float):
        return predictions_from_messages(replay_collect([path], loaded, window_s, hop_s, top_k=1))

    return replay


def run(args: argparse.Namespace) -> int:
    from audio_core.windows import checkpoint_window_s, hop_samples
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
    if not args.streaming:  # the clip-level path caches features; streaming replays audio
        writable_folder(args.cache_dir, "--cache-dir")
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
        for warning in window_warnings(args.window_s, max(args.hops), loaded):
            print(f"streamd: warning: {warning}", file=sys.stderr, flush=True)
    try:
        clip_set = _dataset(args, loaded)
        if args.folders:
            window_s = None if args.streaming else checkpoint_window_s(loaded.info)
            clip_set = _usable_clips(clip_set, window_s)
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
            loaded.model, loaded.info, clip_set, args.out, args.cache_dir, precision=loaded.precision
        )
    except ValueError as exc:  # unreadable audio, labels the model does not know
        raise ConfigError(str(exc)) from None
    print(json.dumps(report, indent=1) if args.json else report_markdown(report, clip_set.name), end="")
    return 0
