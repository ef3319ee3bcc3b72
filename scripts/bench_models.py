"""Benchmark of streamd's models at tiny size on a 5-s window (498 frames): parameters, GFLOPs, CPU latency
in fp32 and bf16 autocast, the bf16 error; ms per second of audio for the streaming Mamba; and the Mamba
scans (sequential reference vs chunked). Prints markdown tables.

GFLOPs: ``torch.utils.flop_counter.FlopCounterMode`` (matrix products, convolutions, attention; one
multiply-add = 2 FLOPs) plus, for Mamba, the scan's element-wise work counted by formula: 5 FLOPs per
(token, channel, state) (Δ·A, exp, Δ·u·B, and the multiply-add of the state update; the read-out C·h is a
matrix product the counter sees).

    OMP_NUM_THREADS=2 python scripts/bench_models.py --threads 2
    python scripts/bench_models.py --threads 1 --only "stride 16"      # some models only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models import mamba  # noqa: E402
from models.bf16 import bf16_autocast, bf16_error  # noqa: E402
from models.common import DATASET_STATS, FeatureConfig  # noqa: E402
from models.registry import build_model  # noqa: E402
from models.streaming_mamba import StreamingMamba  # noqa: E402

WINDOW_FRAMES = 498  # 5.00 s at 10-ms frames
MODELS: list[tuple[str, str, dict]] = [
    ("piczak_cnn", "Piczak CNN (paper sizes)", {}),
    ("resnet_cnn", "residual CNN (default)", {}),
    ("ast", "AST tiny, stride 10", {"size": "tiny", "fstride": 10, "tstride": 10, "target_frames": 512}),
    ("ast", "AST tiny, stride 16", {"size": "tiny", "fstride": 16, "tstride": 16, "target_frames": 512}),
    (
        "ast",
        "AST tiny, stride 16, conv stem",
        {"size": "tiny", "fstride": 16, "tstride": 16, "stem": "conv", "target_frames": 512},
    ),
    ("aum", "AuM tiny, Fo-Fo", {"size": "tiny", "variant": "Fo-Fo", "target_frames": 512}),
    ("aum", "AuM tiny, Fo-Bi", {"size": "tiny", "variant": "Fo-Bi", "target_frames": 512}),
    ("aum", "AuM tiny, Bi-Bi", {"size": "tiny", "variant": "Bi-Bi", "target_frames": 512}),
    ("streaming_mamba", "streaming Mamba (default)", {}),
]


class ScanFlops:
    """Counts the scans' element-wise FLOPs while installed in place of ``selective_scan_chunked``."""

    def __init__(self) -> None:
        self.flops = 0
        self._original = mamba.selective_scan_chunked

    def __enter__(self) -> ScanFlops:
        def counting(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, *args, **kwargs):
            batch, length, d_inner = u.shape
            self.flops += 5 * batch * length * d_inner * A.shape[1]
            return self._original(u, delta, A, *args, **kwargs)

        mamba.selective_scan_chunked = counting
        return self

    def __exit__(self, *exc: object) -> None:
        mamba.selective_scan_chunked = self._original


def gflops(fn: Callable[[], object]) -> float:
    with ScanFlops() as scans, FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return (counter.get_total_flops() + scans.flops) / 1e9


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def real_window() -> torch.Tensor:
    """A real ESC-50 clip as a normalised fbank (1, 498, 128), or seeded noise when the data is absent."""
    clip = REPO / ".." / "shared" / "data" / "esc50" / "audio" / "1-100032-A-0.flac"
    if clip.exists():
        import soundfile as sf

        from audio_core.fbank import compute_fbank

        wave, _ = sf.read(str(clip), dtype="float32")
        fbank = compute_fbank(wave - np.mean(wave), FeatureConfig())[:WINDOW_FRAMES]
        mean, std, _ = DATASET_STATS["esc50"]
        return ((fbank - mean) / (2 * std)).unsqueeze(0)
    return torch.randn(1, WINDOW_FRAMES, 128, generator=torch.Generator().manual_seed(0)) * 0.5


def model_rows(repeats: int, only: str = "") -> list[str]:
    x = real_window()
    rows = [
        "| model | params (M) | GFLOPs / window | fp32 ms / window | bf16 ms / window "
        "| bf16 max abs Δ (rel) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for arch, title, config in MODELS:
        if only not in title:
            continue
        torch.manual_seed(0)
        model = build_model(arch, {"num_classes": 50, **config}).eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        flops = gflops(partial(model, x))
        fp32 = median_ms(partial(model, x), repeats)

        def low(m: torch.nn.Module = model) -> object:
            with bf16_autocast():
                return m(x)

        bf16 = median_ms(low, repeats)
        error = bf16_error(model, x)
        rows.append(
            f"| {title} | {params:.2f} | {flops:.2f} | {fp32:.1f} | {bf16:.1f} | "
            f"{error.max_abs:.2g} ({error.rel:.1e}) |"
        )
    return rows


def streaming_rows(repeats: int) -> list[str]:
    torch.manual_seed(0)
    model = cast(StreamingMamba, build_model("streaming_mamba", {"num_classes": 50}).eval())
    seconds = 10.0
    steps = int(seconds * 100) // model.column_frames  # 62 columns of 160 ms
    x = torch.randn(1, steps * model.column_frames, 128, generator=torch.Generator().manual_seed(1))
    columns = [x[:, s * 16 : (s + 1) * 16] for s in range(steps)]

    def stream(autocast: bool) -> Callable[[], object]:
        def run() -> object:
            with bf16_autocast(enabled=autocast):
                state = model.init_state(1)
                for column in columns:
                    _, state = model.step(column, state)
            return state

        return run

    step_flops = gflops(lambda: model.step(columns[0], model.init_state(1))) * 1e3  # MFLOPs per column
    state_kb = sum(v.numel() * v.element_size() for v in model.init_state(1).values()) / 1024
    per_s = steps / seconds
    rows = [
        "| streaming Mamba | fp32 | bf16 |",
        "|---|---:|---:|",
        f"| ms per second of audio, step by step (6.25 columns) | "
        f"{median_ms(stream(False), repeats) / seconds:.2f} | "
        f"{median_ms(stream(True), repeats) / seconds:.2f} |",
        f"| ms per second of audio, full-sequence forward over {seconds:g} s | "
        f"{median_ms(lambda: model.forward_steps(x), repeats) / seconds:.2f} | - |",
        f"| MFLOPs per second of audio | {step_flops * per_s:.1f} | |",
        f"| state size (KiB, constant) | {state_kb:.0f} | |",
    ]
    return rows


def doubling_scan(decay: torch.Tensor, drive: torch.Tensor, C: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """Parallel-prefix alternative, for comparison only: Hillis-Steele doubling within each chunk."""
    batch, length, d_inner, d_state = drive.shape
    h = drive.new_zeros(batch, d_inner, d_state)
    ys = []
    for t0 in range(0, length, chunk):
        a, b = decay[:, t0 : t0 + chunk], drive[:, t0 : t0 + chunk]
        step = 1
        while step < a.shape[1]:
            b = torch.cat([b[:, :step], torch.addcmul(b[:, step:], a[:, step:], b[:, :-step])], dim=1)
            a = torch.cat([a[:, :step], a[:, step:] * a[:, :-step]], dim=1)
            step *= 2
        b = torch.addcmul(b, a, h.unsqueeze(1))
        ys.append(torch.matmul(b, C[:, t0 : t0 + chunk].unsqueeze(-1)).squeeze(-1))
        h = b[:, -1]
    return torch.cat(ys, dim=1)


def logspace_scan(
    log_decay: torch.Tensor, drive: torch.Tensor, C: torch.Tensor, chunk: int = 16
) -> torch.Tensor:
    """Parallel-prefix alternative, for comparison only: log-space cumulative sums per chunk (float64)."""
    batch, length, d_inner, d_state = drive.shape
    h = drive.new_zeros(batch, d_inner, d_state, dtype=torch.float64)
    ys = []
    for t0 in range(0, length, chunk):
        s = log_decay[:, t0 : t0 + chunk].double().clamp(min=-600.0 / chunk).cumsum(1)
        states = torch.exp(s) * (torch.cumsum(torch.exp(-s) * drive[:, t0 : t0 + chunk], 1) + h.unsqueeze(1))
        ys.append(torch.matmul(states.float(), C[:, t0 : t0 + chunk].unsqueeze(-1)).squeeze(-1))
        h = states[:, -1]
    return torch.cat(ys, dim=1)


def scan_rows(repeats: int) -> list[str]:
    shapes = [
        ("AuM tiny, one direction of a 5-s window", 1, 249, 384),
        ("streaming Mamba, training batch of 5-s clips", 32, 31, 320),
        ("streaming Mamba, 60 s in one pass", 1, 375, 320),
    ]
    rows = [
        "| scan (no grad) | batch × L × d_inner | ref ms | chunked ms | speed-up "
        "| doubling ms | log-space ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for title, batch, length, d_inner in shapes:
        g = torch.Generator().manual_seed(0)
        u = torch.randn(batch, length, d_inner, generator=g)
        dt = torch.nn.functional.softplus(torch.randn(batch, length, d_inner, generator=g) * 0.5 - 2)
        A = -torch.exp(torch.randn(d_inner, 16, generator=g))
        B, C = (torch.randn(batch, length, 16, generator=g) for _ in range(2))
        ref = median_ms(partial(mamba.selective_scan_ref, u, dt, A, B, C, delta_softplus=False), repeats)
        fast = median_ms(partial(mamba.selective_scan_chunked, u, dt, A, B, C, delta_softplus=False), repeats)
        # the alternatives get their inputs discretised for free (a favour to them)
        log_decay = dt.unsqueeze(-1) * A
        drive = (dt * u).unsqueeze(-1) * B.unsqueeze(2)
        expected = mamba.selective_scan_ref(u, dt, A, B, C, delta_softplus=False)[0]
        for alternative in (doubling_scan(log_decay.exp(), drive, C), logspace_scan(log_decay, drive, C)):
            assert (alternative - expected).abs().max() < 1e-3 * (1 + expected.abs().max())
        decay = log_decay.exp()
        doubling = median_ms(partial(doubling_scan, decay, drive, C), repeats)
        logspace = median_ms(partial(logspace_scan, log_decay, drive, C), repeats)
        rows.append(
            f"| {title} | {batch} × {length} × {d_inner} | {ref:.1f} | {fast:.1f} | {ref / fast:.2f}× | "
            f"{doubling:.1f} | {logspace:.1f} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per measurement (median)")
    parser.add_argument(
        "--only", default="", help="only the models whose title has this text; no other table"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, window {WINDOW_FRAMES} frames (5 s)\n"
    )
    print("\n".join(model_rows(args.repeats, args.only)), end="\n\n", flush=True)
    if not args.only:
        for rows in (streaming_rows(args.repeats), scan_rows(args.repeats)):
            print("\n".join(rows), end="\n\n", flush=True)


if __name__ == "__main__":
    main()
