"""False events per hour of a checkpoint on long background-only audio.

    python scripts/false_events.py CHECKPOINT [--minutes 10] [--hop S] [--window S]

For each background kind (digital silence, white / pink / brown noise at -60 and -40 dBFS, 50 and 60 Hz
hum at -40 dBFS; ``training.background``) it makes ``--minutes`` of audio, scores it window by window
as a stream does (``training.evaluate.window_scores``: the whole-file reference the daemon's
streaming windows are tested against) and runs the daemon's event rules with their default settings
(``streamd.events.find_events``, the offline reference of the live detector). It prints, per kind, the
event starts per hour and the highest window score.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audio_core.windows import WindowPlan, hop_samples, window_samples  # noqa: E402
from models.checkpoint import load_checkpoint  # noqa: E402
from models.common import ModelInfo, Normalization  # noqa: E402
from streamd.events import EventConfig, find_events  # noqa: E402
from streamd.script_args import ScriptParser, positive  # noqa: E402
from training.background import background_wave  # noqa: E402
from training.evaluate import window_scores  # noqa: E402

CASES = [
    ("silence", 0.0),
    ("white", -60.0),
    ("white", -40.0),
    ("pink", -60.0),
    ("pink", -40.0),
    ("brown", -60.0),
    ("brown", -40.0),
    ("hum50", -40.0),
    ("hum60", -40.0),
]


def load(checkpoint: Path, hop_s: float | None, window_s: float | None) -> tuple[nn.Module, ModelInfo, float]:
    """(model, info with ``window_s``'s frames, hop in seconds); ``ValueError`` (``CheckpointLoadError``
    among them) for a checkpoint that cannot be used or a window or hop off the frame grid."""
    model, info = load_checkpoint(checkpoint)
    if window_s:
        frames = info.features.num_frames(window_samples(window_s, info.features))
        n = info.normalization
        info.normalization = Normalization(n.mean, n.std, frames)
    window = info.normalization.target_frames * info.features.frame_shift_ms / 1000
    hop = hop_s or max(0.1, round(window / 4, 1))
    hop_samples(hop, info.features)
    return model, info, hop


def false_events(checkpoint: Path, minutes: float, loaded: tuple[nn.Module, ModelInfo, float]) -> None:
    """Print the table of false event starts per hour, per background kind."""
    model, info, hop = loaded
    window = info.normalization.target_frames * info.features.frame_shift_ms / 1000
    cfg = EventConfig()
    rate = info.features.sample_rate
    print(f"{checkpoint}: window {window:.2f} s, hop {hop:g} s, events: {cfg}")
    print("| background | level dBFS | event starts / hour | highest score |")
    print("| --- | --- | --- | --- |")
    total = 0
    for i, (kind, level) in enumerate(CASES):
        wave = background_wave(kind, round(minutes * 60 * rate), rate, level, np.random.default_rng(i))
        plan = WindowPlan.from_frames(info.normalization.target_frames, hop, info.features)
        window_starts, scores = window_scores(model, info, wave, plan, 64)
        scores = scores.numpy()
        windows = [
            (s / rate, (s + plan.window_samples) / rate, dict(zip(info.labels, map(float, row), strict=True)))
            for s, row in zip(window_starts, scores, strict=True)
        ]
        starts = sum(
            1 for m in find_events(cfg, kind, windows) if m["type"] == "event" and m["state"] == "start"
        )
        total += starts
        level_text = "-" if kind == "silence" else f"{level:g}"
        print(f"| {kind} | {level_text} | {starts * 60 / minutes:.1f} | {scores.max():.3f} |")
    print(f"all kinds: {total * 60 / (minutes * len(CASES)):.1f} false event starts per hour")


def main() -> None:
    parser = ScriptParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--minutes", type=positive, default=10.0, help="audio per background kind")
    parser.add_argument("--hop", type=positive, help="hop between windows (default: a quarter window)")
    parser.add_argument("--window", type=positive, help="window (default: the checkpoint's)")
    args = parser.parse_args()
    try:
        loaded = load(args.checkpoint, args.hop, args.window)
    except ValueError as exc:  # CheckpointLoadError names the file; a window or hop names the option
        parser.error(str(exc).replace("hop_s", "--hop").replace("window_s", "--window"))
    false_events(args.checkpoint, args.minutes, loaded)


if __name__ == "__main__":
    main()
