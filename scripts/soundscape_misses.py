"""Which sounds of the evaluation soundscapes a model never names, and what it says instead.

    python scripts/soundscape_misses.py CHECKPOINT --folds K [--clips 50] [--soundscapes 4]

Builds the soundscapes ``streamd evaluate --streaming`` builds (the same seeds, clips and gaps, from the
ESC-50 clips of the held-out folds; kept in float, where evaluate writes them as 16-bit WAV), scores them
with the offline reference of a replay (``training.evaluate.offline_stream_predictions``, the model's own
window for a windowed model, hop 1 s) and, for every sound never named within its span and
the 5 s after it (``training.soundscape_scoring.onset_latencies``), prints its label, length, level and
the labels the model gave over it; then the missed sounds' median length and level against the found
ones', and the misses per class.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audio_core.windows import checkpoint_window_s  # noqa: E402
from models.checkpoint import load_checkpoint  # noqa: E402
from streamd.script_args import ScriptParser  # noqa: E402
from training.evaluate import offline_stream_predictions  # noqa: E402
from training.readers import read_esc50  # noqa: E402
from training.soundscape import build_soundscape, load_clips, pick_clips  # noqa: E402
from training.soundscape_scoring import onset_latencies  # noqa: E402

ESC50_CSV = ROOT / ".." / "shared" / "data" / "esc50" / "meta" / "esc50.csv"
GAP_S = (1.0, 3.0)  # evaluate --streaming's default --gap-s
MAX_DELAY_S = 5.0  # a sound named this long after it ended still counts (the scoring's rule)


def main() -> int:
    parser = ScriptParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--folds", type=int, nargs="+", required=True, help="held-out ESC-50 folds")
    parser.add_argument("--esc50", type=Path, default=ESC50_CSV)
    parser.add_argument("--clips", type=int, default=50, help="clips per soundscape (default 50)")
    parser.add_argument("--soundscapes", type=int, default=4, help="soundscapes (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model, info = load_checkpoint(args.checkpoint)
    model.eval()
    clip_set = read_esc50(args.esc50, folds=args.folds)
    items = [(Path(c.path), clip_set.labels[c.targets[0]]) for c in clip_set.clips]
    rate = info.features.sample_rate
    rows = []
    for index in range(args.soundscapes):
        rng = np.random.default_rng(args.seed + index)
        scape = build_soundscape(load_clips(pick_clips(items, args.clips, rng), rate), rng, rate, GAP_S)
        predictions = offline_stream_predictions(model, info, scape.wave, 1.0, checkpoint_window_s(info))
        delays = onset_latencies(predictions, scape.events, MAX_DELAY_S, with_processing=False)
        for event, delay in zip(scape.events, delays, strict=True):
            heard = scape.wave[int(event.onset_s * rate) : int(event.offset_s * rate)].astype(np.float64)
            said = collections.Counter(
                p.label
                for p in predictions
                if event.onset_s < p.t_end <= event.offset_s + MAX_DELAY_S and p.t_start < event.offset_s
            )
            level = 10 * np.log10(np.mean(heard**2) + 1e-20)
            rows.append((event, delay is not None, event.offset_s - event.onset_s, level, said))
    found = [r for r in rows if r[1]]
    missed = [r for r in rows if not r[1]]
    print(f"found {len(found)} of {len(rows)} sounds")
    for event, _, length, level, said in missed:
        top = ", ".join(f"{label} {n}" for label, n in said.most_common(2))
        source = Path(event.source).name
        print(f"missed {event.label}: {length:.2f} s at {level:.1f} dBFS, named {top} ({source})")
    if found and missed:
        for name, index, unit in (("length", 2, "s"), ("level", 3, "dBFS")):
            f, m = (float(np.median([r[index] for r in group])) for group in (found, missed))
            print(f"median {name}: found {f:.2f} {unit}, missed {m:.2f} {unit}")
    print("misses per class:", dict(collections.Counter(r[0].label for r in missed).most_common()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
