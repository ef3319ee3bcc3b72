"""Benchmark a recurrent checkpoint's per-column cost in fp32 and bf16 autocast: ``step`` at several
batch sizes (live streams) and ``forward_chunk`` (catch-up), on the CPU, of the model's inference form
(``models.inference.prepare_for_inference``, what the daemon serves: its mixers stay float32 under
autocast, so bf16 speeds up the stem and head); the figures behind ``models/precision.py``.

    python scripts/bench_recurrent_step.py streamd/default_models/default_recurrent.safetensors
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.checkpoint import load_checkpoint  # noqa: E402
from models.inference import prepare_for_inference  # noqa: E402
from models.streaming_mamba import COLUMN_FRAMES  # noqa: E402


def per_call_ms(fn: Callable[[], object], calls: int, repeats: int) -> float:
    """Median over ``repeats`` of the mean milliseconds per call over ``calls`` calls (after a warm-up)."""
    for _ in range(5):
        fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - start) / calls * 1000)
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--threads", default="1,2", help="torch thread counts")
    parser.add_argument("--batches", default="1,4,16", help="streams per step call")
    parser.add_argument("--chunk", type=int, default=64, help="columns per catch-up call")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model, info = load_checkpoint(args.checkpoint)
    model = prepare_for_inference(model.eval(), "fp32")  # the form the daemon serves
    bins = info.features.num_mel_bins
    print(f"torch {torch.__version__}; {args.checkpoint.name}; ms per call (fp32 / bf16 autocast)")
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        # (name, input, calls per timing, columns per call, how to call the model)
        rows = [
            (f"step, batch {b}", torch.randn(b, COLUMN_FRAMES, bins), 100, 1, model.step)
            for b in map(int, args.batches.split(","))
        ]
        chunk = torch.randn(1, args.chunk * COLUMN_FRAMES, bins)
        rows.append((f"chunk of {args.chunk} columns, per column", chunk, 5, args.chunk, model.forward_chunk))
        for name, x, calls, columns, run in rows:
            figures = []
            for bf16 in (False, True):
                state = model.init_state(x.shape[0])
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    ms = per_call_ms(lambda run=run, x=x, s=state: run(x, s), calls, args.repeats)
                figures.append(ms / columns)
            print(f"{threads} thread(s)  {name:<34} {figures[0]:.3f} / {figures[1]:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
