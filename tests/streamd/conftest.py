"""Fixtures for the pipeline tests: real ESC-50 clips, small seeded checkpoints, a tiny recurrent model,
a free port and an MQTT broker."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support.checkpoints import NUM_MEL_BINS, small_resnet_checkpoint
from support.esc50 import Esc50
from support.fixtures import free_tcp_port
from support.mosquitto import Broker
from torch import nn

from models import FeatureConfig, ModelInfo, RecurrentClassifier
from streamd.model_loading import LoadedModel


@pytest.fixture(scope="session")
def clips(esc50: Esc50) -> list[Path]:
    """Three real 5-s ESC-10 clips (16 kHz mono FLAC)."""
    return esc50.clips(3)


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory, esc50: Esc50) -> Path:
    """A small random-weight (seeded) residual CNN over 64 mel bins with the ESC-50 labels."""
    return small_resnet_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.safetensors", esc50.labels)


class TinyRecurrent(RecurrentClassifier):
    """Test-only causal model with explicit state: ``h <- tanh(W·mean(column) + U·h)``, logits ``V·h``."""

    def __init__(self, num_mel_bins: int, num_classes: int, hidden: int = 16, column_frames: int = 4) -> None:
        super().__init__()
        self.column_frames = column_frames
        self.num_classes = num_classes
        self.w = nn.Linear(num_mel_bins, hidden)
        self.u = nn.Linear(hidden, hidden, bias=False)
        self.v = nn.Linear(hidden, num_classes)

    def init_state(self, batch: int, device: torch.device | None = None) -> dict[str, torch.Tensor]:
        return {"h": torch.zeros(batch, self.u.in_features, device=device)}

    def step(self, column: torch.Tensor, state: dict[str, torch.Tensor]):
        h = torch.tanh(self.w(column.mean(dim=1)) + self.u(state["h"]))  # (B, H)
        return self.v(h), {"h": h}

    def forward_steps(self, fbank: torch.Tensor) -> torch.Tensor:
        state = self.init_state(fbank.shape[0], fbank.device)
        out = []
        for k in range(fbank.shape[1] // self.column_frames):
            logits, state = self.step(fbank[:, k * self.column_frames : (k + 1) * self.column_frames], state)
            out.append(logits)
        return torch.stack(out, dim=1)  # (B, S, C)


@pytest.fixture()
def tiny_recurrent(esc50: Esc50) -> LoadedModel:
    """A ``TinyRecurrent`` (seeded) with the ESC-50 labels, ready to run on the CPU."""
    torch.manual_seed(1)
    labels = esc50.labels
    model = TinyRecurrent(NUM_MEL_BINS, len(labels)).eval()
    info = ModelInfo(
        arch="tiny_recurrent", config={}, labels=labels, features=FeatureConfig(num_mel_bins=NUM_MEL_BINS)
    )
    return LoadedModel(model, info, "tiny", torch.device("cpu"))


@pytest.fixture()
def free_port() -> int:
    """A TCP port nobody listens on right now (on 127.0.0.1)."""
    return free_tcp_port()


@pytest.fixture()
def broker(tmp_path: Path):
    """A mosquitto broker of the test's own on 127.0.0.1, stopped after it."""
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()
