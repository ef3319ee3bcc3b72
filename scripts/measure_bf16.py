"""Measure a checkpoint's bf16 top-1 agreement with fp32 on real ESC-50 clips and record it in the file.

Writes ``extra.bf16_agreement`` (and the number of windows) into the checkpoint's metadata; the weights
are unchanged. ``--precision auto`` keeps fp32 for models below 99 %.

    python scripts/measure_bf16.py streamd/default_models/default.safetensors --clips 200
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audio_core.audio_file import read_audio  # noqa: E402
from audio_core.fbank import compute_fbank  # noqa: E402
from models.bf16_agreement import record_bf16_agreement  # noqa: E402
from models.checkpoint import read_info  # noqa: E402

ESC50 = REPO / ".." / "shared" / "data" / "esc50"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--clips", type=int, default=200, help="clips (every k-th of ESC-50 by name)")
    parser.add_argument("--audio-dir", type=Path, default=ESC50)
    args = parser.parse_args()
    with (args.audio_dir / "meta" / "esc50.csv").open(newline="") as f:
        names = sorted(row["filename"] for row in csv.DictReader(f))
    chosen = names[:: max(1, len(names) // args.clips)][: args.clips]
    for path in args.checkpoints:
        features = read_info(path).features
        fbanks = [compute_fbank(read_audio(args.audio_dir / "audio" / n), features) for n in chosen]
        frames = min(f.shape[0] for f in fbanks)
        agreement = record_bf16_agreement(path, [f[:frames] for f in fbanks])
        print(f"{path}: bf16 top-1 agreement with fp32 {100 * agreement:.2f} % on {len(chosen)} clips")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
