"""Build a small spoken-word task that no shipped model was trained on, for transfer measurements.

Eight command words ("yes", "no", "up", "down", "left", "right", "stop", "go") spoken by espeak-ng with
many voices (English accents × voice variants), random pitch and speed, placed at a random offset in a
1.5-s clip over pink noise at a random SNR. Train and test speakers are disjoint (voice variants are split
between them), so the test measures generalisation to new voices. The layout is split folders
(``OUT/train/<word>/*.wav``, ``OUT/test/<word>/*.wav``), which ``streamd train --data OUT`` reads.

    python scripts/make_speech_task.py /tmp/speech_words --train-per-class 24 --test-per-class 16

Needs the ``espeak-ng`` program (Debian package espeak-ng).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

WORDS = ("yes", "no", "up", "down", "left", "right", "stop", "go")
ACCENTS = ("en-gb", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
SAMPLE_RATE = 16000
CLIP_S = 1.5


def variants() -> list[str]:
    """espeak-ng's voice variants, listed by the program itself (sorted, so the split is reproducible)."""
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True)
    names = [line.split()[3] for line in out.stdout.splitlines()[1:] if len(line.split()) > 3]
    return sorted({name.removeprefix("!v/") for name in names})


def pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Pink (1/f) noise of unit RMS, shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1))
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def speak(word: str, voice: str, pitch: int, speed: int, tmp: Path) -> np.ndarray:
    """One utterance at 16 kHz, mono float32."""
    path = tmp / "word.wav"
    cmd = ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(path), word]
    subprocess.run(cmd, check=True, capture_output=True)
    audio, rate = sf.read(path, dtype="float32")
    positions = np.arange(0, len(audio) - 1, rate / SAMPLE_RATE)
    return np.interp(positions, np.arange(len(audio)), audio).astype(np.float32)


def make_clip(rng: np.random.Generator, speech: np.ndarray) -> np.ndarray:
    """The utterance at a random offset in a 1.5-s clip over pink noise at 5-30 dB SNR."""
    n = int(CLIP_S * SAMPLE_RATE)
    speech = speech[:n]
    clip = np.zeros(n, dtype=np.float32)
    start = int(rng.integers(0, n - len(speech) + 1))
    clip[start : start + len(speech)] = speech
    speech_rms = float(np.sqrt(np.mean(speech**2))) + 1e-9
    snr_db = rng.uniform(5.0, 30.0)
    clip += pink_noise(rng, n).astype(np.float32) * speech_rms / 10 ** (snr_db / 20)
    return clip * (0.5 / max(float(np.abs(clip).max()), 1e-6))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train-per-class", type=int, default=24)
    parser.add_argument("--test-per-class", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        print("make_speech_task: needs the espeak-ng program (apt-get install espeak-ng)", file=sys.stderr)
        return 1
    rng = np.random.default_rng(args.seed)
    voices = variants()
    rng.shuffle(voices)
    split_at = (2 * len(voices)) // 3
    speakers = {"train": voices[:split_at], "test": voices[split_at:]}
    counts = {"train": args.train_per_class, "test": args.test_per_class}
    with tempfile.TemporaryDirectory() as tmp_dir:
        for split, count in counts.items():
            for word in WORDS:
                folder = args.out / split / word
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(count):
                    voice = f"{rng.choice(ACCENTS)}+{rng.choice(speakers[split])}"
                    pitch, speed = int(rng.integers(20, 81)), int(rng.integers(120, 221))
                    speech = speak(word, voice, pitch, speed, Path(tmp_dir))
                    sf.write(folder / f"{word}_{i:03d}.wav", make_clip(rng, speech), SAMPLE_RATE)
    total = len(WORDS) * sum(counts.values())
    voices_used = f"{len(speakers['train'])} train / {len(speakers['test'])} test voices"
    print(f"{total} clips in {args.out} ({voices_used})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
