"""Held-out top-1 of checkpoints alone and of their averaged probabilities (a distillation teacher's
ensemble) on ESC-50 folds.

    python scripts/ensemble_accuracy.py runs/cnn_e200_f4/single/model.safetensors \
        runs/cnn_e200_bc_f4/single/model.safetensors --folds 4

Each checkpoint scores every clip on its own features (``training.evaluate.clip_scores``, the training
input); the ensemble averages the probabilities, as ``[train.distill]`` does at temperature 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_replay import ESC50_CSV  # noqa: E402

from models.checkpoint import load_checkpoint  # noqa: E402
from training.evaluate import align_targets, clip_scores  # noqa: E402
from training.readers import read_esc50  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--folds", type=int, nargs="+", required=True, help="held-out folds to score")
    parser.add_argument("--csv", type=Path, default=ESC50_CSV, help="ESC-50 metadata CSV")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache" / "fbank")
    args = parser.parse_args()
    clips = read_esc50(args.csv).subset(args.folds)
    probs, targets = [], None
    for path in args.checkpoints:
        model, info = load_checkpoint(path)
        scores = clip_scores(model, info, clips, args.cache_dir)
        y = align_targets(clips, info)
        if targets is not None and not np.array_equal(y, targets):
            raise SystemExit(f"{path}: its labels are not those of the first checkpoint")
        targets = y
        probs.append(scores)
        print(f"{path}  top-1 {np.mean(scores.argmax(1) == y):.4f}")
    ensemble = np.mean(probs, axis=0)
    print(f"ensemble of {len(probs)}  top-1 {np.mean(ensemble.argmax(1) == targets):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
