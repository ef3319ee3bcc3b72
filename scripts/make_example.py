"""Build ``examples/long.wav``: a soundscape of ESC-10 clips (CC BY 3.0) over quiet pink noise, with
``examples/ATTRIBUTION.md`` crediting every clip and listing where it sits (the ground truth).

Only ESC-10 clips (``esc10`` = True in meta/esc50.csv) are used: the rest of ESC-50 is non-commercial.
The result is reproducible: the same data and seed give the same file.

    python scripts/make_example.py                    # ../shared/data/esc50 -> examples/
    python scripts/make_example.py --clips 12 --seed 3
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audio_core.audio_file import read_audio  # noqa: E402
from training.soundscape import Soundscape, audible_span, build_soundscape  # noqa: E402

SAMPLE_RATE = 16000
LICENSE_LINE = re.compile(r"^- \[(?P<clip>[^\]]+)\.ogg\]: (?P<text>.+)$")


def esc10_rows(csv_path: Path) -> list[dict[str, str]]:
    """The ESC-10 rows of an ESC-50 metadata file."""
    with csv_path.open(newline="") as f:
        return [row for row in csv.DictReader(f) if row["esc10"].strip().lower() == "true"]


def attributions(license_path: Path) -> dict[str, str]:
    """Clip id (``1-100032-A``) -> its attribution line in LICENSE_ESC-50.txt."""
    out = {}
    for line in license_path.read_text(encoding="utf-8").splitlines():
        match = LICENSE_LINE.match(line.strip())
        if match:
            out[match["clip"]] = match["text"]
    return out


def clip_id(filename: str) -> str:
    """``1-100032-A-0.flac`` -> ``1-100032-A`` (the id the license file uses)."""
    return filename.rsplit("-", 1)[0]


def choose(
    rows: list[dict[str, str]], count: int, rng: np.random.Generator, audio: Path
) -> list[dict[str, str]]:
    """``count`` clips, categories in turn (shuffled), each the longest-sounding of a few candidates."""
    by_category: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_category.setdefault(row["category"], []).append(row)
    categories = [str(c) for c in rng.permutation(sorted(by_category))]
    chosen = []
    for i in range(count):
        candidates = by_category[categories[i % len(categories)]]
        picks = [
            candidates[int(k)]
            for k in rng.choice(len(candidates), size=min(4, len(candidates)), replace=False)
        ]
        picks = [p for p in picks if p not in chosen] or picks

        def audible_s(row: dict[str, str]) -> float:
            start, end = audible_span(read_audio(audio / row["filename"]), SAMPLE_RATE)
            return end - start

        chosen.append(max(picks, key=audible_s))
    return chosen


def attribution_markdown(scape: Soundscape, rows: dict[str, dict[str, str]], credits: dict[str, str]) -> str:
    lines = [
        "# examples/long.wav: sources and attribution",
        "",
        f"`long.wav` ({scape.duration_s:.1f} s, {scape.sample_rate} Hz mono, 16-bit) is a soundscape made by",
        "`scripts/make_example.py` from clips of the ESC-10 subset of the ESC-50 dataset, joined by",
        "quiet synthetic pink noise. ESC-10 is licensed under the Creative Commons Attribution 3.0",
        "Unported license (https://creativecommons.org/licenses/by/3.0/):",
        "",
        'K. J. Piczak, "ESC: Dataset for Environmental Sound Classification", Proceedings of the 23rd ACM',
        "International Conference on Multimedia, 2015. https://github.com/karolpiczak/ESC-50",
        "",
        "The clips were resampled to 16 kHz and mixed over the noise; nothing else was changed. Each clip is",
        "derived from a Freesound recording, credited below as in the dataset's LICENSE file.",
        "",
        "| start s | end s | sound onset s | class | ESC-50 clip | attribution |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for e in scape.events:
        row = rows[e.source]
        ident = clip_id(row["filename"])
        lines.append(
            f"| {e.start_s:.2f} | {e.end_s:.2f} | {e.onset_s:.2f} | {e.label} | {ident} | {credits[ident]} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--esc50", type=Path, default=REPO.parent / "shared" / "data" / "esc50")
    parser.add_argument("--out", type=Path, default=REPO / "examples")
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-duration-s", type=float, default=60.0)
    args = parser.parse_args(argv)

    rows = esc10_rows(args.esc50 / "meta" / "esc50.csv")
    credits = attributions(args.esc50 / "meta" / "LICENSE_ESC-50.txt")
    missing = [r["filename"] for r in rows if clip_id(r["filename"]) not in credits]
    if missing:
        print(f"no attribution for {missing[:3]}: not used", file=sys.stderr)
        rows = [r for r in rows if r["filename"] not in missing]
    rng = np.random.default_rng(args.seed)
    audio = args.esc50 / "audio"
    chosen = choose(rows, args.clips, rng, audio)
    clips = [(read_audio(audio / r["filename"]), r["category"], r["filename"]) for r in chosen]
    scape = build_soundscape(clips, rng, SAMPLE_RATE, gap_s=(1.0, 2.0), background_dbfs=-55.0)
    if scape.duration_s < args.min_duration_s:
        print(f"only {scape.duration_s:.1f} s: use more --clips", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    sf.write(args.out / "long.wav", scape.wave, SAMPLE_RATE, subtype="PCM_16")
    by_name = {r["filename"]: r for r in chosen}
    (args.out / "ATTRIBUTION.md").write_text(attribution_markdown(scape, by_name, credits))
    print(f"wrote {args.out / 'long.wav'} ({scape.duration_s:.1f} s, {len(clips)} clips)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
