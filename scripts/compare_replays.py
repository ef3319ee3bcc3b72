"""Compare two ``streamd replay --json`` outputs of the same audio (e.g. ``--compute cuda`` against
``--compute cpu``): the predictions pair up by stream and window; prints their count, top-1 agreement
and the largest difference of a label's score among the labels both list. Exit 1 if they do not pair up.

    python scripts/compare_replays.py cpu.jsonl cuda.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def predictions(path: Path) -> dict[tuple[str, float, float], dict[str, float]]:
    """Each prediction's scores by label, keyed by (stream, t_start, t_end)."""
    out = {}
    for line in path.read_text().splitlines():
        message = json.loads(line)
        if message.get("type") == "prediction":
            key = (message["stream"], message["t_start"], message["t_end"])
            out[key] = {item["label"]: item["score"] for item in message["labels"]}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path)
    parser.add_argument("other", type=Path)
    args = parser.parse_args()
    a, b = predictions(args.reference), predictions(args.other)
    if not a or a.keys() != b.keys():
        print(f"predictions do not pair up: {len(a)} vs {len(b)}, {len(a.keys() ^ b.keys())} unmatched")
        return 1
    agree = sum(max(a[k], key=a[k].get) == max(b[k], key=b[k].get) for k in a)
    diff = max(abs(a[k][label] - b[k][label]) for k in a for label in a[k].keys() & b[k].keys())
    print(f"{len(a)} predictions, top-1 agreement {agree / len(a):.4f}, max score difference {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
