"""Record in ESC-50-trained checkpoints the digests of the clips they trained on (``extra.trained_clips``,
``training.trained_clips``), for checkpoints that record only their folds (the shipped models were trained
before training runs recorded them): ``evaluate`` and fine-tuning (``--init``) then recognise those clips
by their bytes under any name, in any CSV or folder. The weights are unchanged.

    python scripts/record_trained_clips.py streamd/default_models/*.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.checkpoint import read_info, update_extra  # noqa: E402
from training.readers import read_esc50  # noqa: E402
from training.trained_clips import KEY, record  # noqa: E402

ESC50_CSV = REPO / ".." / "shared" / "data" / "esc50" / "meta" / "esc50.csv"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--esc50", type=Path, default=ESC50_CSV, help="the ESC-50 CSV (audio beside it)")
    args = parser.parse_args()
    for path in args.checkpoints:
        folds = read_info(path).extra.get("train_folds")
        if not folds:
            print(f"{path}: records no training folds; left as it is", file=sys.stderr)
            continue
        clips = read_esc50(args.esc50, folds=folds).clips
        missing = [c.path for c in clips if not Path(c.path).is_file()]
        if missing:
            print(f"{path}: {len(missing)} clip(s) of folds {folds} missing: {missing[0]}", file=sys.stderr)
            return 1
        entry = record(Path(c.path) for c in clips)
        update_extra(path, {KEY: entry, "dataset": "esc50"})
        print(f"{path}: {entry['count']} clips of ESC-50 folds {folds} recorded")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
