"""Soak run: an hour of real audio replayed flat out through ``streamd replay`` with a slow subscriber.

Builds the audio from ESC-10 clips in ``../shared/data/esc50`` (one after another, repeated), starts the
daemon as a subprocess that waits for the subscriber, reads slowly from it in this process, samples the
daemon's resident memory five times a second, and prints a Markdown report: memory at start, end and peak, the
final status counters, and what the slow subscriber got. Not a test; see docs/robustness.md.

    python scripts/soak.py                      # 1 hour, a small random-weight CNN
    python scripts/soak.py --hours 0.1 --checkpoint model.safetensors
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import soundfile as sf
import zmq

REPO = Path(__file__).resolve().parents[1]
ESC50 = REPO / ".." / "shared" / "data" / "esc50"
RATE = 16000
RSS_SAMPLE_S = 0.2


def esc10_clips() -> list[Path]:
    with (ESC50 / "meta" / "esc50.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["esc10"] == "True"]
    return [ESC50 / "audio" / r["filename"] for r in sorted(rows, key=lambda r: r["filename"])]


def write_soak_audio(path: Path, hours: float) -> float:
    """ESC-10 clips back to back (repeated as needed) up to ``hours``; returns the duration in seconds."""
    total = round(hours * 3600 * RATE)
    clips = esc10_clips()
    written = 0
    with sf.SoundFile(path, "w", samplerate=RATE, channels=1, subtype="PCM_16", format="WAV") as out:
        while written < total:
            for clip in clips:
                data, rate = sf.read(clip, dtype="float32")
                assert rate == RATE
                n = min(len(data), total - written)
                out.write(data[:n])
                written += n
                if written >= total:
                    break
    return written / RATE


def small_checkpoint(path: Path) -> Path:
    """A residual CNN with random (seeded) weights and the ESC-50 labels."""
    sys.path.insert(0, str(REPO))
    import torch

    from models import FeatureConfig, ModelInfo, build_model
    from models.checkpoint import save_checkpoint

    with (ESC50 / "meta" / "esc50.csv").open(newline="") as f:
        names = {int(r["target"]): r["category"] for r in csv.DictReader(f)}
    labels = [names[i] for i in sorted(names)]
    config = {"num_classes": len(labels), "channels": [8, 16, 32, 64], "num_mel_bins": 64}
    torch.manual_seed(0)
    model = build_model("resnet_cnn", config).eval()
    info = ModelInfo("resnet_cnn", config, labels, features=FeatureConfig(num_mel_bins=64))
    return save_checkpoint(path, model, info)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        return None
    return None


class SlowSubscriber(threading.Thread):
    """Subscribes to everything and takes ``delay_s`` per message."""

    def __init__(self, endpoint: str, delay_s: float) -> None:
        super().__init__(name="soak-slow-subscriber", daemon=True)
        self.endpoint = endpoint
        self.delay_s = delay_s
        self.received = 0
        self.stop = threading.Event()

    def run(self) -> None:
        context = zmq.Context()
        sock = context.socket(zmq.SUB)
        sock.rcvhwm = 100
        sock.subscribe(b"")
        sock.connect(self.endpoint)
        try:
            while not self.stop.is_set():
                if sock.poll(100):
                    sock.recv_multipart()
                    self.received += 1
                    time.sleep(self.delay_s)
        finally:
            sock.close(linger=0)
            context.term()


def run_soak(args: argparse.Namespace, work: Path) -> dict:
    audio = work / "soak.wav"
    duration_s = write_soak_audio(audio, args.hours)
    checkpoint = args.checkpoint or small_checkpoint(work / "small.safetensors")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    subscriber = SlowSubscriber(endpoint, args.subscriber_delay_ms / 1000.0)
    subscriber.start()
    command = [sys.executable, "-m", "streamd", "replay", str(audio), "--speed", "max"]
    command += ["--checkpoint", str(checkpoint), "--publish", endpoint, "--hop", str(args.hop)]
    command += ["--status-interval", "5", "--wait-subscriber", "60", "--no-dashboard", "--json"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    started = time.monotonic()
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    memory: list[tuple[float, float]] = []
    lines: list[str] = []
    first_line_at: list[float] = []

    def read() -> None:
        for line in proc.stdout or []:
            if not first_line_at:
                first_line_at.append(time.monotonic() - started)
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while proc.poll() is None:
        mb = rss_mb(proc.pid)
        if mb is not None:
            memory.append((time.monotonic() - started, mb))
        time.sleep(RSS_SAMPLE_S)
    reader.join()
    time.sleep(2.0)
    subscriber.stop.set()
    subscriber.join(5.0)
    statuses = [m for m in map(json.loads, lines) if m.get("type") == "status"]
    first = next(s for s in statuses if s["state"] == "starting")
    # "Start": the first sample once the pipeline runs (the daemon printed its "starting" status).
    pipeline = [mb for t, mb in memory if first_line_at and t >= first_line_at[0]] or [0.0]
    return {
        "exit": proc.returncode,
        "audio_s": duration_s,
        "pipeline_s": statuses[-1]["wall_time"] - first["wall_time"],
        "process_s": time.monotonic() - started,
        "rss_start_mb": pipeline[0],
        "rss_end_mb": pipeline[-1],
        "rss_peak_mb": max(pipeline),
        "rss_samples": len(pipeline),
        "final": statuses[-1],
        "predictions": sum(1 for line in lines if '"type":"prediction"' in line),
        "messages": len(lines),
        "subscriber_received": subscriber.received,
        "subscriber_delay_ms": args.subscriber_delay_ms,
        "checkpoint": str(checkpoint)
        if args.checkpoint
        else "small random-weight residual CNN (64 mel bins)",
    }


def report(r: dict) -> str:
    c = r["final"]["counters"]
    rows = [
        ("audio replayed", f"{r['audio_s'] / 3600:.2f} h ({r['audio_s']:.0f} s) of ESC-10 clips, 16 kHz"),
        ("model", r["checkpoint"]),
        ("pipeline wall time", f"{r['pipeline_s']:.1f} s ({r['audio_s'] / r['pipeline_s']:.0f}x real time)"),
        ("final state / exit", f"{r['final']['state']} / {r['exit']}"),
        ("RSS when the audio starts", f"{r['rss_start_mb']:.1f} MiB"),
        ("RSS at the end", f"{r['rss_end_mb']:.1f} MiB"),
        ("RSS peak (sampled every 0.2 s)", f"{r['rss_peak_mb']:.1f} MiB ({r['rss_samples']} samples)"),
        ("windows / dropped", f"{c['windows']} / {c['dropped_windows']}"),
        ("predictions printed", str(r["predictions"])),
        ("samples", str(c["samples"])),
        ("overruns / lost samples", f"{c['overruns']} / {c.get('lost_samples', 0)}"),
        ("model errors / late results", f"{c['model_errors']} / {c['late_results']}"),
        ("published / publish_dropped", f"{c['published']} / {c['publish_dropped']}"),
        ("latency p50 / p99", f"{c.get('latency_p50_ms', 0):.1f} / {c.get('latency_p99_ms', 0):.1f} ms"),
        (
            f"slow subscriber ({r['subscriber_delay_ms']:g} ms per message)",
            f"received {r['subscriber_received']} of the {r['messages']} messages the daemon sent",
        ),
    ]
    return "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0, help="audio to replay (default 1)")
    parser.add_argument("--hop", type=float, default=1.0, help="hop between 5-s windows (default 1)")
    parser.add_argument("--checkpoint", type=Path, help="model checkpoint (default: a small random CNN)")
    parser.add_argument("--subscriber-delay-ms", type=float, default=20.0, help="per message (default 20)")
    args = parser.parse_args()
    if not (ESC50 / "meta" / "esc50.csv").exists():
        print(f"soak: ESC-50 not found at {ESC50}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="streamd-soak-") as tmp:
        result = run_soak(args, Path(tmp))
    print(report(result))
    return 0 if result["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
