"""Benchmark: replay at least ten minutes of real audio at ``--speed max`` through the daemon's pipeline.

Reports the real-time factor (audio seconds / wall seconds), window-to-publish latency p50/p99, batching,
drops, and resident memory sampled through the run (it should stay flat). The audio is real ESC-50 clips
back to back (from ../shared/data/esc50 beside the repository, or --audio-dir). The model is the shipped
default if it is installed, otherwise a random-weight residual CNN of the default size (timing only).

    OMP_NUM_THREADS=2 python scripts/bench_replay.py --minutes 10 --hop 1.0
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models import FeatureConfig, ModelInfo, build_model  # noqa: E402
from models.checkpoint import save_checkpoint  # noqa: E402
from streamd.config import DaemonConfig, with_windows  # noqa: E402
from streamd.daemon import Daemon  # noqa: E402
from streamd.file_source import FileSource  # noqa: E402
from streamd.model_loading import LoadedModel, load_model, shipped_model_path  # noqa: E402
from streamd.model_runner import model_threads  # noqa: E402
from streamd.publisher import Publisher  # noqa: E402

ESC50 = REPO / ".." / "shared" / "data" / "esc50"
ESC50_CSV = ESC50 / "meta" / "esc50.csv"


def rss_mib() -> float:
    """Resident set size of this process."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_audio(esc50: Path, minutes: float, out: Path) -> tuple[Path, float]:
    """Real clips (sorted by name) back to back until ``minutes`` are reached, as one 16 kHz WAV."""
    with (esc50 / "meta" / "esc50.csv").open(newline="") as f:
        names = sorted(row["filename"] for row in csv.DictReader(f))
    need = int(minutes * 60 * 16000)
    with sf.SoundFile(out, "w", samplerate=16000, channels=1, subtype="PCM_16") as dst:
        written = 0
        for name in names:
            if written >= need:
                break
            wave, rate = sf.read(esc50 / "audio" / name, dtype="float32")
            if rate != 16000:
                raise SystemExit(f"{name}: expected 16 kHz, got {rate}")
            dst.write(wave[: need - written])
            written += min(wave.size, need - written)
    if written < need:
        raise SystemExit(f"only {written / 16000 / 60:.1f} minutes of audio available")
    return out, written / 16000


def default_model(checkpoint: Path | None, precision: str, tmp: Path) -> tuple[LoadedModel, str]:
    if checkpoint is not None:
        return load_model(checkpoint, compute="cpu", precision=precision), str(checkpoint)
    shipped = shipped_model_path("default")
    if shipped.exists():
        return load_model(shipped, compute="cpu", precision=precision, name="default"), "shipped default"
    torch.manual_seed(0)
    config = {"num_classes": 50, "num_mel_bins": 64}
    model = build_model("resnet_cnn", config).eval()
    info = ModelInfo("resnet_cnn", config, [f"class{i}" for i in range(50)], FeatureConfig(num_mel_bins=64))
    path = save_checkpoint(tmp / "bench_resnet64.safetensors", model, info)
    return load_model(path, compute="cpu", precision=precision, name="resnet64"), "random resnet_cnn, 64 mel"


def model_alone_ms(loaded: LoadedModel, frames: int, repeats: int = 60) -> float:
    """Median milliseconds per window of the bare model (batch 1, same precision and threads)."""
    from streamd.model_runner import ModelRunner

    runner = ModelRunner(loaded)
    window = torch.zeros(frames, loaded.info.features.num_mel_bins)
    for _ in range(3):
        runner.score_windows([window])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        runner.score_windows([window])
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))  # the median: robust to other processes' bursts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="audio to replay per stream (default 10)")
    parser.add_argument("--streams", type=int, default=1, help="copies of the audio replayed at once")
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--hop", type=float, default=1.0)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the daemon's default)")
    parser.add_argument("--max-batch", type=int, default=None)
    parser.add_argument("--queue-size", type=int, default=None)
    parser.add_argument("--block-s", type=float, default=None, help="file chunk at --speed max")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--audio-dir", type=Path, default=ESC50, help="ESC-50 root (audio/ and meta/)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        audio, seconds = build_audio(args.audio_dir, args.minutes, tmp / "bench.wav")
        loaded, model_desc = default_model(args.checkpoint, args.precision, tmp)
        cfg = with_windows(DaemonConfig(), args.window, args.hop)
        cfg.engine.threads = model_threads(args.threads, loaded.device)  # as the daemon will choose
        torch.set_num_threads(cfg.engine.threads)
        alone_ms = model_alone_ms(loaded, loaded.info.features.num_frames(round(args.window * 16000)))
        if args.max_batch:
            cfg.engine.max_batch = args.max_batch
        if args.queue_size:
            cfg.engine.queue_size = args.queue_size
        if args.block_s:
            cfg.capture.max_block_s = args.block_s
        cfg.publish.status_interval_s = 1.0
        latencies: list[float] = []
        finals: dict[str, dict] = {}  # each stream's last finished status (it may say so more than once)

        def sink(msg: dict) -> None:
            if msg["type"] == "prediction":
                latencies.append(msg["latency_ms"])
            elif msg["type"] == "status" and msg["state"] == "finished":
                finals[msg["stream"]] = msg["counters"]

        publisher = Publisher("inproc://bench", queue_size=100_000)
        publisher.add_sink(sink)
        sources = [
            FileSource(audio, speed=None, max_block_s=cfg.capture.max_block_s, name=f"bench{i}")
            for i in range(args.streams)
        ]
        daemon = Daemon(cfg, sources, loaded, publisher)
        memory: list[float] = []
        done = threading.Event()

        def sample_memory() -> None:
            while not done.wait(1.0):
                memory.append(rss_mib())

        sampler = threading.Thread(target=sample_memory, daemon=True)
        rss_before = rss_mib()
        sampler.start()
        cpu_started = time.process_time()
        started = time.monotonic()
        daemon.run_until_done()
        wall = time.monotonic() - started
        cpu = time.process_time() - cpu_started
        done.set()

    audio_s = seconds * args.streams
    windows = sum(c["windows"] for c in finals.values())
    dropped = sum(c["dropped_windows"] for c in finals.values())
    batches = max((c["batches"] for c in finals.values()), default=0)
    lat = np.asarray(latencies)
    busy = daemon.engine.busy_s
    third = max(1, len(memory) // 3)
    ceiling = (
        1000 * args.hop / alone_ms
    )  # audio seconds per wall second if only the model (batch 1) cost time
    rows = [
        ("model", f"{model_desc} ({args.precision}, torch threads {torch.get_num_threads()})"),
        ("audio", f"{args.streams} x {seconds / 60:.1f} min, window {args.window:g} s, hop {args.hop:g} s"),
        ("wall", f"{wall:.1f} s"),
        ("real-time factor", f"{audio_s / wall:.1f}x"),
        (
            "model alone",
            f"{alone_ms:.1f} ms/window: at most {ceiling:.0f}x at this hop "
            f"(the pipeline reached {100 * audio_s / wall / ceiling:.0f}%)",
        ),
        ("windows", f"{windows} in {batches} model calls ({windows / max(batches, 1):.1f} per call)"),
        (
            "model time",
            f"{busy:.1f} s ({100 * busy / wall:.0f}% of wall), {1000 * busy / max(windows, 1):.1f} ms/window",
        ),
        ("process CPU", f"{cpu:.1f} s ({cpu / wall:.2f} cores; load average {os.getloadavg()[0]:.1f})"),
        ("dropped", f"{dropped}, errors: {'; '.join(daemon.errors) or 'none'}"),
        (
            "latency ms",
            f"p50 {np.percentile(lat, 50):.1f}, p99 {np.percentile(lat, 99):.1f}, max {lat.max():.1f}",
        ),
    ]
    if memory:
        rows.append(
            (
                "memory MiB",
                f"before {rss_before:.0f}, first third max {max(memory[:third]):.0f}, "
                f"last third max {max(memory[-third:]):.0f}",
            )
        )
    for name, value in rows:
        print(f"{name:<17}{value}")
    return 0 if not daemon.errors and dropped == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
