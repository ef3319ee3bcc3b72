"""Clip scores of a recurrent model on held-out clips cut short: the rule streamd uses (the file's last
step) against padding with silence to one window and reading the step at its end (the windowed models'
rule, used for recurrent models before).

    python scripts/recurrent_short_clips.py CHECKPOINT --fold 4 [--seconds 1 2 3]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch

from audio_core.audio_file import read_audio
from audio_core.windows import checkpoint_plan, pad_with_silence
from streamd.model_loading import load_model
from training.evaluate import waveform_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--esc50", type=Path, default=Path("../shared/data/esc50"))
    parser.add_argument("--fold", type=int, default=4)
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaded = load_model(args.checkpoint, compute="cpu", precision="fp32")
    info = loaded.info
    rate = info.features.sample_rate
    window = checkpoint_plan(info, 1.0).window_samples
    with open(args.esc50 / "meta" / "esc50.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["fold"]) == args.fold]
    waves = [read_audio(args.esc50 / "audio" / r["filename"], rate) for r in rows]
    targets = np.array([info.labels.index(r["category"]) for r in rows])

    def accuracy(cut: list[np.ndarray]) -> float:
        best = [np.argmax(waveform_scores(loaded.model, info, w)) for w in cut]
        return float(np.mean(np.array(best) == targets))

    for seconds in args.seconds:
        cut = [w[: round(seconds * rate)] for w in waves]
        last, padded = accuracy(cut), accuracy([pad_with_silence(w, window) for w in cut])
        print(
            f"first {seconds:g} s of {len(rows)} clips of fold {args.fold}: "
            f"last step {last:.3f}, padded to one window {padded:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
