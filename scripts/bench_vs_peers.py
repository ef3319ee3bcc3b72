"""Benchmark, side by side in one run: transformers' AST against ours (fp32, bf16, int8) with the same
random AST weights, ``streamd replay`` at default settings (the whole command, wall time), recurrent
replay, and N streams at once at live rate with their latency p99 (also without each stream's first and
last window, which arrive together because the benchmark's streams start and end together).

The audio is real ESC-50 clips back to back (``scripts/bench_replay.build_audio``). Numbers depend on the
machine and on what else runs on it; the README's performance table is this script's output.

    python scripts/bench_vs_peers.py                      # AST-base, 5-s window, 2 threads, 10 minutes
    python scripts/bench_vs_peers.py --ast-size tiny --minutes 1 --streams 1,4 --live-s 10   # quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_replay import ESC50, build_audio  # noqa: E402

from audio_core.fbank import compute_fbank  # noqa: E402
from models import convert_ast  # noqa: E402
from models.ast_fast import FastAST  # noqa: E402
from models.bf16 import bf16_autocast  # noqa: E402
from models.common import DATASET_STATS, FeatureConfig, Normalization  # noqa: E402

esc50_norm = Normalization(*DATASET_STATS["esc50"])
PARTS = ("ast", "replay", "recurrent", "streams")
HF_SIZES = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}  # hidden size, heads (12 layers)


def best_ms(fn, x: torch.Tensor, repeats: int) -> float:
    """Best of ``repeats`` calls after one warm-up, in milliseconds."""
    with torch.inference_mode():
        fn(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - start)
    return 1000 * min(times)


def ast_rows(size: str, frames: int, repeats: int, window: torch.Tensor) -> list[tuple[str, str]]:
    """transformers' ASTForAudioClassification vs ours, same random weights, one ``frames`` window."""
    import transformers

    dim, heads = HF_SIZES[size]
    torch.manual_seed(0)
    hf_config = transformers.ASTConfig(
        hidden_size=dim,
        num_attention_heads=heads,
        intermediate_size=4 * dim,
        max_length=frames,
        num_labels=527,
    )
    hf = transformers.ASTForAudioClassification(hf_config).eval()
    state = convert_ast.from_hf(hf.state_dict())
    ours = convert_ast.build(convert_ast.config_from_hf(hf_config.to_dict(), state), state)
    x = window[None, :frames]
    hf_ms = best_ms(lambda v: hf(v).logits, x, repeats)
    with torch.inference_mode():
        reference = hf(x).logits
    rows = [(f"transformers AST-{size} fp32", f"{hf_ms:.0f} ms")]
    fast = {p: FastAST(ours, p) for p in ("fp32", "bf16", "int8")}

    def bf16(v: torch.Tensor) -> torch.Tensor:
        with bf16_autocast("cpu"):
            return fast["bf16"](v)

    for name, fn in (("fp32", fast["fp32"]), ("bf16", bf16), ("int8", fast["int8"])):
        ms = best_ms(fn, x, repeats)
        with torch.inference_mode():
            diff = float((fn(x).float() - reference).abs().max())
        rows.append(
            (f"streamd AST-{size} {name}", f"{ms:.0f} ms ({hf_ms / ms:.2f}x; max |logit diff| {diff:.3g})")
        )
    return rows


def replay_command(paths: list[Path], *extra: str) -> list[str]:
    return [sys.executable, "-m", "streamd", "replay", *map(str, paths), "--no-dashboard", "--json", *extra]


def timed_replay(paths: list[Path], *extra: str) -> tuple[float, float | None, list[dict], dict]:
    """Wall time of the whole command, time to its first prediction, every prediction message and the
    last status message (its ``rtf``: audio seconds per wall second from the pipeline's start)."""
    start = time.perf_counter()
    proc = subprocess.Popen(replay_command(paths, *extra), stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    first, predictions, status = None, [], {}
    for line in proc.stdout:
        msg = json.loads(line)
        if msg.get("type") == "prediction":
            first = first if first is not None else time.perf_counter() - start
            predictions.append(msg)
        elif msg.get("type") == "status":
            status = msg
    if proc.wait() != 0:
        raise SystemExit(f"replay failed: {' '.join(replay_command(paths, *extra))}")
    return time.perf_counter() - start, first, predictions, status


def steady_latencies(predictions: list[dict]) -> list[float]:
    """Latencies without each stream's first and last window: the streams of the benchmark start and end
    together, so those windows reach the model all at once whatever the stagger."""
    last: dict[str, int] = {}
    for msg in predictions:
        last[msg["stream"]] = max(last.get(msg["stream"], 0), msg["window_index"])
    return [float(m["latency_ms"]) for m in predictions if 0 < m["window_index"] < last[m["stream"]]]


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else (values or [float("nan")])[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ast-size", choices=tuple(HF_SIZES), default="base")
    parser.add_argument("--frames", type=int, default=498, help="AST window in frames (498: 5 s)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the AST comparison")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=10.0, help="audio replayed at --speed max")
    parser.add_argument("--streams", default="1,4,16", help="live-rate stream counts")
    parser.add_argument("--live-s", type=float, default=30.0, help="seconds of audio per live stream")
    parser.add_argument("--audio-dir", type=Path, default=ESC50)
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"what to measure, comma-separated (default: all of {', '.join(PARTS)})",
    )
    args = parser.parse_args()
    parts = {part.strip() for part in args.parts.split(",") if part.strip()}
    if not parts or parts - set(PARTS):
        parser.error(f"--parts takes some of {', '.join(PARTS)}, got {args.parts!r}")
    rows: list[tuple[str, str]] = [("torch", f"{torch.__version__}, AST threads {args.threads}")]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        audio, seconds = build_audio(args.audio_dir, args.minutes, tmp / "replay.wav")
        wave, _ = sf.read(audio, dtype="float32", frames=16000 * 5)
        fbank = compute_fbank(wave, FeatureConfig())  # a real 5-s window, 128 mel bins
        torch.set_num_threads(args.threads)
        if "ast" in parts:
            rows += ast_rows(args.ast_size, args.frames, args.repeats, esc50_norm.apply(fbank))
        if "replay" in parts:
            wall, first, _, _ = timed_replay([audio], "--speed", "max")
            rows.append(
                (
                    f"replay {seconds / 60:.1f} min, defaults, --speed max",
                    f"{seconds / wall:.0f}x real time ({wall:.1f} s wall, first prediction {first:.2f} s)",
                )
            )
        if "recurrent" in parts:
            wall, first, _, status = timed_replay([audio], "--speed", "max", "--model", "recurrent")
            rtf = status.get("counters", {}).get("rtf", float("nan"))
            rows.append(
                (
                    f"replay {seconds / 60:.1f} min, --model recurrent, --speed max",
                    f"{seconds / wall:.0f}x real time ({wall:.1f} s wall); pipeline {rtf:.0f}x (the "
                    "daemon's rtf, from its start to the last column)",
                )
            )
        live, _ = build_audio(args.audio_dir, args.live_s / 60, tmp / "live.wav")
        for n in (int(v) for v in args.streams.split(",")) if "streams" in parts else ():
            wall, _, preds, _ = timed_replay([live] * n, "--speed", "1")
            lat, steady = [float(m["latency_ms"]) for m in preds], steady_latencies(preds)
            rows.append(
                (
                    f"{n} stream(s) at live rate, defaults",
                    f"latency p50 {statistics.median(lat):.0f} ms, p99 {p99(lat):.0f} ms "
                    f"({len(lat)} predictions); between each stream's first and last window "
                    f"p50 {statistics.median(steady):.0f} ms, p99 {p99(steady):.0f} ms",
                )
            )
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
