"""Throughput of ``streamd classify --windows`` in audio hours per minute: locally, and on a local Ray
cluster (a head and a worker node started here) with 1 and 2 model actors. Prints a markdown table.

The archive is built from ESC-50 (folds 1-4 beside the repository): ``--files`` recordings of ``--minutes``
each, concatenated clips, written as 16 kHz FLAC into a temporary folder. Every run is a separate
``streamd`` process (model load and, for Ray, connecting included), timed from start to exit.

    OMP_NUM_THREADS=1 python scripts/bench_archive.py --files 8 --minutes 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
AUDIO = REPO.parent / "shared" / "data" / "esc50" / "audio"
SR = 16000


def build_archive(folder: Path, files: int, minutes: float) -> tuple[list[Path], float]:
    """``files`` recordings of ``minutes`` each from consecutive ESC-50 clips; their total hours."""
    clips = sorted(AUDIO.glob("*.flac"))
    per_file = round(minutes * 60 / 5.0)
    paths = []
    for i in range(files):
        chunk = clips[i * per_file : (i + 1) * per_file]
        wave = np.concatenate([sf.read(str(p), dtype="float32")[0] for p in chunk])
        path = folder / f"rec{i:03d}.flac"
        sf.write(path, wave, SR)
        paths.append(path)
    return paths, files * per_file * 5.0 / 3600


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "streamd", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"streamd failed:\n{done.stderr[-3000:]}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--hop-s", type=float, default=2.5)
    parser.add_argument("--model", default="default")
    parser.add_argument("--cpus-per-node", type=int, default=2)
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_AUTH_MODE="disabled")
    os.environ.update(PYTHONPATH=env["PYTHONPATH"], RAY_AUTH_MODE="disabled")  # for the Ray nodes
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths, hours = build_archive(folder, args.files, args.minutes)
        base = ["classify", "--windows", "--no-progress", "--model", args.model, "--hop-s", str(args.hop_s)]
        base += ["--format", "jsonl", *map(str, paths)]
        rows = [("local (one process)", timed([*base, "--out", str(folder / "local.jsonl")], env))]
        from ray.cluster_utils import Cluster

        node = {"num_cpus": args.cpus_per_node, "object_store_memory": 200 * 1024 * 1024}
        cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
        try:
            cluster.add_node(**node)
            cluster.wait_for_nodes(timeout=120)
            for actors in (1, 2):
                out = folder / f"ray{actors}.jsonl"
                ray_args = ["--ray", "--ray-address", cluster.address, "--ray-actors", str(actors), "--out"]
                rows.append((f"Ray, 2 nodes, {actors} actor(s)", timed([*base, *ray_args, str(out)], env)))
        finally:
            cluster.shutdown()
    print(f"{args.files} files x {args.minutes:g} min = {hours:.3f} h of audio, hop {args.hop_s:g} s\n")
    print("| run | wall s | audio h / min |")
    print("|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {hours / (seconds / 60):.3f} |")


if __name__ == "__main__":
    main()
