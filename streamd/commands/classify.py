"""``streamd classify PATH...``: clip-level top-k labels of audio files, offline.

Long files are classified window by window and the windows' probabilities averaged (see
``training.evaluate.waveform_scores``); files shorter than a window are zero-padded. A file that cannot
be read is reported on stderr, the others are still classified, and the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from streamd.errors import ConfigError
from streamd.model_loading import LoadedModel

HELP = "classify audio files offline: top-k labels per file (long files window by window)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="audio files (any format libsndfile reads)")
    parser.add_argument(
        "--model",
        metavar="NAME|FILE.toml",
        default="default",
        help="'default' (windowed), 'recurrent', or a model config TOML (as for run/replay)",
    )
    parser.add_argument(
        "--checkpoint", type=Path, metavar="PATH", help="a .safetensors checkpoint (overrides --model)"
    )
    parser.add_argument("--top-k", type=int, default=5, help="labels to show per file (default 5)")
    parser.add_argument(
        "--hop-s", type=float, default=2.5, help="hop between windows of long files (default 2.5)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line: {file, labels}")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")


def resolve_model(model: str, checkpoint: Path | None) -> LoadedModel:
    """The model that ``--model`` / ``--checkpoint`` name (as run/replay resolve them), on the CPU."""
    from streamd.config import load_model_toml
    from streamd.model_loading import load_model, load_named_model

    if checkpoint is not None:
        return load_model(checkpoint, compute="cpu")
    if model.endswith(".toml"):
        return load_model(load_model_toml(model)["model"]["checkpoint"], compute="cpu")
    return load_named_model(model, compute="cpu")


def _check_options(args: argparse.Namespace) -> None:
    if args.top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {args.top_k}")
    if not args.hop_s > 0:
        raise ConfigError(f"--hop-s must be positive, got {args.hop_s}")
    if args.threads < 0:
        raise ConfigError(f"--threads must be >= 0, got {args.threads}")


def _print_text(path: str, labels: list[dict]) -> None:
    best = "  ".join(f"{item['label']} {item['score']:.3f}" for item in labels)
    print(f"{path}: {best}", flush=True)


def run(args: argparse.Namespace) -> int:
    from training.audio import load_audio_16k
    from training.evaluate import top_labels, waveform_scores

    _check_options(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = resolve_model(args.model, args.checkpoint)
    model, info = loaded.model, loaded.info
    failed = 0
    for path in args.paths:
        try:
            wave = load_audio_16k(path, info.features.sample_rate)
            scores = waveform_scores(model, info, wave, args.hop_s)
        except ValueError as exc:
            failed += 1
            message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            print(f"streamd: error: {message}", file=sys.stderr, flush=True)
            continue
        labels = top_labels(scores, info.labels, min(args.top_k, len(info.labels)))
        if args.json:
            print(json.dumps({"file": str(path), "labels": labels}), flush=True)
        else:
            _print_text(str(path), labels)
    if failed:
        print(f"streamd: {failed} of {len(args.paths)} file(s) could not be classified", file=sys.stderr)
        return 1
    return 0
