"""Benchmark: one training step (forward, backward, AdamW) of the conv-stem streaming Mamba on a batch of
streams, as ``streamd train`` runs it with ``[train.sequences]`` (bf16 autocast where the CPU runs it
natively): the model of the recurrent training config, at the widths asked. Random input: the cost does
not depend on the values.

    python scripts/bench_train_step.py                                   # 8 streams of 30 s, one thread
    python scripts/bench_train_step.py --width 32:192 --threads 2       # stem channels : d_model
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tomllib
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.bf16 import native_bf16  # noqa: E402
from models.registry import build_model  # noqa: E402
from models.streaming_mamba import COLUMN_FRAMES  # noqa: E402

CONFIG = REPO / "configs" / "train" / "esc50_streaming_mamba_conv_distill.toml"


def step_seconds(
    channels: int, d_model: int, args: argparse.Namespace, steps: int, bf16: bool
) -> tuple[float, list[float]]:
    """Parameters (M) and the seconds of ``args.repeats`` timed training steps (after one warm-up)."""
    torch.manual_seed(0)
    recipe = tomllib.loads(args.config.read_text())["model"]["config"]
    config = recipe | {
        "num_classes": 50,
        "num_mel_bins": args.mel_bins,
        "stem_channels": channels,
        "d_model": d_model,
    }
    model = build_model("streaming_mamba", config).train()
    x = torch.randn(args.batch, steps * COLUMN_FRAMES, args.mel_bins)
    y = torch.randint(0, 50, (args.batch, steps))
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model.forward_steps(x)
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, 50), y.reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    step()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return sum(p.numel() for p in model.parameters()) / 1e6, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", action="append", help="STEM_CHANNELS:D_MODEL (default 16:128 and 32:192)")
    parser.add_argument(
        "--config", type=Path, default=CONFIG, help="the training config whose model to build"
    )
    parser.add_argument("--batch", type=int, default=8, help="streams per batch")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per stream")
    parser.add_argument("--mel-bins", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bf16 = native_bf16("cpu")[0]
    steps = int(args.seconds * 100) // COLUMN_FRAMES
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), bf16 autocast: {bf16}, {args.batch} streams "
        f"of {steps} columns"
    )
    for width in args.width or ["16:128", "32:192"]:
        channels, d_model = (int(v) for v in width.split(":"))
        params, times = step_seconds(channels, d_model, args, steps, bf16)
        print(
            f"stem {channels}, d_model {d_model} ({params:.2f} M parameters): "
            f"best {min(times):.3f} s, median {statistics.median(times):.3f} s per step"
        )


if __name__ == "__main__":
    main()
