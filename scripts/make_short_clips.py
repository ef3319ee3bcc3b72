"""Build a short-clip task from ESC-50: the loudest ``--seconds`` of each clip, as split folders.

    python scripts/make_short_clips.py ESC50_DIR OUT [--esc10] [--train-folds 1 2 3] [--test-folds 4]

writes ``OUT/train/<class>/<clip>.wav`` and ``OUT/test/<class>/<clip>.wav`` (16 kHz mono), the layout
``streamd train --data OUT`` takes (a fixed split by fold).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audio_core.audio_file import read_audio  # noqa: E402


def loudest_excerpt(wave: np.ndarray, num_samples: int) -> np.ndarray:
    """The ``num_samples`` stretch of ``wave`` with the most energy (the whole of a shorter wave)."""
    if wave.size <= num_samples:
        return wave
    energy = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
    window = energy[num_samples:] - energy[:-num_samples]
    start = int(np.argmax(window))
    return wave[start : start + num_samples]


def write_split(rows: list[dict[str, str]], audio_dir: Path, out: Path, split: str, seconds: float) -> int:
    """Write the excerpts of ``rows`` under ``out/split/<category>/``; returns how many."""
    for row in rows:
        wave = read_audio(audio_dir / row["filename"])
        target = out / split / row["category"] / (Path(row["filename"]).stem + ".wav")
        target.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(target), loudest_excerpt(wave, round(seconds * 16000)), 16000)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("esc50", type=Path, help="ESC-50 folder (meta/esc50.csv, audio/)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--esc10", action="store_true", help="only the ESC-10 clips (10 classes)")
    parser.add_argument("--train-folds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--test-folds", type=int, nargs="+", default=[4])
    args = parser.parse_args()
    with (args.esc50 / "meta" / "esc50.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if not args.esc10 or r["esc10"] == "True"]
    audio = args.esc50 / "audio"
    for split, folds in (("train", args.train_folds), ("test", args.test_folds)):
        n = write_split([r for r in rows if int(r["fold"]) in folds], audio, args.out, split, args.seconds)
        print(f"{split}: {n} clips")


if __name__ == "__main__":
    main()
