"""Build a short-clip task from ESC-50: the loudest ``--seconds`` of each clip, as split folders.

    python scripts/make_short_clips.py ESC50_DIR OUT [--esc10 | --classes C ...] [--max-seconds S]
        [--cut C ...] [--train-folds 1 2 3] [--test-folds 4]

writes ``OUT/train/<class>/<clip>.wav`` and ``OUT/test/<class>/<clip>.wav`` (16 kHz mono), the layout
``streamd train --data OUT`` takes (a fixed split by fold). ``--max-seconds``: each clip's length drawn
between ``--seconds`` and it (seeded: the same task every time); ``--cut``: only these classes are cut,
the others' clips kept whole.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audio_core.audio_file import read_audio  # noqa: E402
from audio_core.errors import StreamdError  # noqa: E402
from streamd.script_args import ScriptParser, positive  # noqa: E402


def loudest_excerpt(wave: np.ndarray, num_samples: int) -> np.ndarray:
    """The ``num_samples`` stretch of ``wave`` with the most energy (the whole of a shorter wave)."""
    if wave.size <= num_samples:
        return wave
    energy = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
    window = energy[num_samples:] - energy[:-num_samples]
    start = int(np.argmax(window))
    return wave[start : start + num_samples]


def write_split(
    rows: list[dict[str, str]],
    audio_dir: Path,
    out: Path,
    split: str,
    seconds: tuple[float, float],
    cut: set[str] | None = None,
) -> int:
    """Write the excerpts of ``rows`` under ``out/split/<category>/``, each ``seconds`` long (a length
    drawn between the two, seeded), only those of ``cut`` classes when given; returns how many."""
    rng = np.random.default_rng(0)
    for row in rows:
        wave = read_audio(audio_dir / row["filename"])
        length = float(rng.uniform(*seconds))
        target = out / split / row["category"] / (Path(row["filename"]).stem + ".wav")
        target.parent.mkdir(parents=True, exist_ok=True)
        if cut is None or row["category"] in cut:
            wave = loudest_excerpt(wave, round(length * 16000))
        sf.write(str(target), wave, 16000)
    return len(rows)


def read_rows(esc50: Path, esc10: bool) -> list[dict[str, str]]:
    """The clips of ``ESC50/meta/esc50.csv`` (only ESC-10's with ``esc10``); ``ValueError`` naming the
    file when it is missing, unreadable or lacks a column."""
    meta = esc50 / "meta" / "esc50.csv"
    if not meta.is_file() or not (esc50 / "audio").is_dir():
        raise ValueError(f"{esc50}: not an ESC-50 folder (need meta/esc50.csv and audio/)")
    try:
        with meta.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{meta}: cannot be read ({exc})") from None
    missing = {"filename", "fold", "category", "esc10"} - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"{meta}: not ESC-50's metadata (no column {', '.join(sorted(missing))})")
    if bad := [r["fold"] for r in rows if not (r["fold"] or "").strip().isdigit()][:1]:
        raise ValueError(f"{meta}: a fold is not a whole number: {bad[0]!r}")
    return [r for r in rows if not esc10 or r["esc10"] == "True"]


def main() -> None:
    parser = ScriptParser(description=__doc__.splitlines()[0])
    parser.add_argument("esc50", type=Path, help="ESC-50 folder (meta/esc50.csv, audio/)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=positive, default=1.0)
    parser.add_argument("--max-seconds", type=positive, help="lengths drawn from --seconds to this")
    parser.add_argument("--esc10", action="store_true", help="only the ESC-10 clips (10 classes)")
    parser.add_argument("--classes", nargs="+", help="only these categories")
    parser.add_argument("--cut", nargs="+", help="cut only these categories (the others kept whole)")
    parser.add_argument("--train-folds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--test-folds", type=int, nargs="+", default=[4])
    args = parser.parse_args()
    try:
        rows = read_rows(args.esc50, args.esc10)
    except ValueError as exc:
        parser.error(str(exc))
    if args.classes:
        if unknown := sorted(set(args.classes) - {r["category"] for r in rows}):
            parser.error(f"no category {unknown[0]!r} in {args.esc50}")
        rows = [r for r in rows if r["category"] in args.classes]
    if args.max_seconds is not None and args.max_seconds < args.seconds:
        parser.error("--max-seconds must be at least --seconds")
    seconds = (args.seconds, args.max_seconds or args.seconds)
    audio = args.esc50 / "audio"
    for split, folds in (("train", args.train_folds), ("test", args.test_folds)):
        chosen = [r for r in rows if int(r["fold"]) in folds]
        try:
            n = write_split(chosen, audio, args.out, split, seconds, set(args.cut) if args.cut else None)
        except StreamdError as exc:  # a clip that cannot be read: the reader names it
            parser.error(str(exc))
        except OSError as exc:  # OUT cannot be written (a file in the way, no room)
            parser.error(f"{exc.filename or args.out}: {exc.strerror or exc}")
        print(f"{split}: {n} clips")


if __name__ == "__main__":
    main()
