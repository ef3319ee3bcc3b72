"""What a staggered stream's led-in first window costs: held-out top-1 of a checkpoint on whole 5-s
ESC-50 clips, on the same clips led in by silence (the first window of stream k of N), and on the same
audio with the silence after it instead (the short-file rule), so the silence's place is measured apart
from the audio it replaces.

    python scripts/lead_in_accuracy.py runs/cnn_e200_bc_f4/single/model.safetensors --fold 4 --lead-s 0.9375
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

from audio_core.audio_file import read_audio  # noqa: E402
from audio_core.fbank import compute_fbank  # noqa: E402
from audio_core.scoring import scores  # noqa: E402
from audio_core.windows import pad_with_silence, window_samples_for_frames  # noqa: E402
from models.checkpoint import load_checkpoint  # noqa: E402
from training.evaluate import align_targets  # noqa: E402
from training.readers import read_esc50  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--fold", type=int, required=True, help="a fold the checkpoint did not see")
    parser.add_argument("--lead-s", type=float, default=0.9375, help="seconds of silence (stream 16 of 16)")
    parser.add_argument("--csv", type=Path, default=ESC50_CSV, help="ESC-50 metadata CSV")
    args = parser.parse_args()
    model, info = load_checkpoint(args.checkpoint)
    clips = read_esc50(args.csv).subset([args.fold])
    targets = align_targets(clips, info)
    rate = info.features.sample_rate
    width = window_samples_for_frames(info.normalization.target_frames, info.features)
    lead = round(args.lead_s * rate)
    silence = np.zeros(lead, np.float32)
    names = ("whole window", f"led in by {args.lead_s:g} s of silence", f"{args.lead_s:g} s of silence after")
    right = dict.fromkeys(names, 0)
    for clip, y in zip(clips.clips, targets, strict=True):
        wave = read_audio(clip.path, rate)
        wave = pad_with_silence(wave, width)[:width]  # ESC-50 clips are 5 s; a window of the model's length
        kept = wave[: width - lead]
        variants = (wave, np.concatenate([silence, kept]), np.concatenate([kept, silence]))
        for name, audio in zip(names, variants, strict=True):
            probs = scores(model, info, compute_fbank(audio, info.features)[None])
            right[name] += int(probs.argmax(1).item() == y)
    for name, count in right.items():
        print(f"{name:<32} {count}/{len(targets)} = {100 * count / len(targets):.2f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
