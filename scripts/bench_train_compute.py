"""Benchmark: one training step (forward, backward, AdamW) of a training config's windowed model on a
batch of random 5-s fbanks, on the CPU and, where present, on a CUDA device, each in the precision
``train.precision = auto`` picks there (bf16 where the device runs it natively). Random input: the cost
does not depend on the values.

    python scripts/bench_train_compute.py                                   # the default CNN recipe
    python scripts/bench_train_compute.py --config configs/train/esc50_ast_tiny_distill.toml --threads 2
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

from audio_core.compute import describe_device  # noqa: E402
from models.bf16 import resolve_auto  # noqa: E402
from models.registry import build_model, make_config  # noqa: E402

CONFIG = REPO / "configs" / "train" / "esc50_resnet_cnn.toml"


def step_times(recipe: dict, device: torch.device, batch: int, repeats: int) -> tuple[str, list[float]]:
    """The precision used and the seconds of ``repeats`` timed steps on ``device`` (after two warm-ups)."""
    torch.manual_seed(0)
    mel = recipe.get("features", {}).get("num_mel_bins", 128)
    frames = recipe.get("normalization", {}).get("target_frames", 498)
    values = dict(recipe["model"].get("config", {}))
    names = set(make_config(recipe["model"]["arch"], {}).__dataclass_fields__)
    values |= {
        k: v
        for k, v in {"num_classes": 50, "num_mel_bins": mel, "target_frames": frames}.items()
        if k in names
    }
    model = build_model(recipe["model"]["arch"], values).to(device).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, frames, mel, device=device)
    y = torch.randint(0, 50, (batch,), device=device)
    precision = resolve_auto("auto", device.type)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return precision, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", type=Path, default=CONFIG, help="the training config whose model to build"
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = tomllib.loads(args.config.read_text())
    batch = recipe.get("train", {}).get("batch_size", 32)
    print(f"torch {torch.__version__}, {args.config.name}, batch {batch}, CPU threads {args.threads}")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        precision, times = step_times(recipe, device, batch, args.repeats)
        median = statistics.median(times)
        print(
            f"{describe_device(device)}, {precision}: median {median * 1000:.1f} ms per step "
            f"(best {min(times) * 1000:.1f}), {batch / median:.0f} clips/s"
        )


if __name__ == "__main__":
    main()
