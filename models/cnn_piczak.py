"""A log-mel CNN in the spirit of Piczak 2015, the first CNN on ESC-50.

Source: K. J. Piczak, "Environmental sound classification with convolutional neural networks", IEEE
MLSP 2015 (karolpiczak/paper-2015-esc-convnet). The network sees short segments (41 frames, about
0.4 s at 10-ms frames here) of a log-mel spectrogram and its deltas as two channels:

- conv 80 filters of (57/60 of the mel bins) × 6 frames, ReLU, max-pool 4×3 (stride 1×3), dropout 0.5;
- conv 80 filters 1×3, ReLU, max-pool 1×3 (stride 1×3);
- two fully connected layers of 5000 ReLU units with dropout 0.5, then the output layer.

A window is cut into segments every ``segment_hop`` frames (50% overlap, the paper's "short" variant)
and the segments' logits are averaged (the paper votes with probabilities). Deltas use the regression
formula over ±2 frames with edge replication (as Kaldi / torchaudio ``compute_deltas``), computed over
the whole window before segmenting. Input: normalised fbank ``(B, T, F)``; the paper used 60 bands, here
the frequency kernel scales with ``num_mel_bins`` unless given.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.common import WindowedClassifier


@dataclass
class PiczakConfig:
    num_classes: int = 50
    num_mel_bins: int = 128
    segment_frames: int = 41
    segment_hop: int = 20
    use_deltas: bool = True
    channels: int = 80
    freq_kernel: int = 0  # 0: round(57 / 60 * num_mel_bins), the paper's proportion
    time_kernel: int = 6
    hidden: int = 5000
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if not self.freq_kernel:
            self.freq_kernel = round(57 / 60 * self.num_mel_bins)
        if not 4 <= self.freq_kernel + 3 <= self.num_mel_bins:
            raise ValueError(
                f"freq_kernel must leave at least 4 bands of {self.num_mel_bins}, got {self.freq_kernel}"
            )
        if self.segment_frames < self.time_kernel + 8 or self.segment_hop < 1:
            raise ValueError("segment_frames must be at least time_kernel + 8 and segment_hop positive")


def deltas(x: torch.Tensor, reach: int = 2) -> torch.Tensor:
    """Regression deltas over time of ``(B, T, F)``: sum_n n (x[t+n] - x[t-n]) / (2 sum_n n^2)."""
    padded = F.pad(x.transpose(1, 2), (reach, reach), mode="replicate")  # (B, F, T + 2 reach)
    frames = x.shape[1]
    out = torch.zeros_like(x.transpose(1, 2))
    for n in range(1, reach + 1):
        out = out + n * (
            padded[..., reach + n : reach + n + frames] - padded[..., reach - n : reach - n + frames]
        )
    return (out / (2 * sum(n * n for n in range(1, reach + 1)))).transpose(1, 2)


def segment_starts(frames: int, length: int, hop: int) -> list[int]:
    """Starts every ``hop`` frames plus one flush with the end; a single segment if ``frames <= length``."""
    if frames <= length:
        return [0]
    starts = list(range(0, frames - length + 1, hop))
    if starts[-1] != frames - length:
        starts.append(frames - length)
    return starts


class PiczakCNN(WindowedClassifier):
    """``forward(fbank (B, T, F)) -> logits (B, C)``: mean of per-segment logits."""

    def __init__(self, cfg: PiczakConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        in_channels = 2 if cfg.use_deltas else 1
        self.conv1 = nn.Conv2d(in_channels, cfg.channels, (cfg.freq_kernel, cfg.time_kernel))
        self.pool1 = nn.MaxPool2d((4, 3), stride=(1, 3))
        self.conv2 = nn.Conv2d(cfg.channels, cfg.channels, (1, 3))
        self.pool2 = nn.MaxPool2d((1, 3), stride=(1, 3))
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc1 = nn.Linear(self._flat_size(), cfg.hidden)
        self.fc2 = nn.Linear(cfg.hidden, cfg.hidden)
        self.head = nn.Linear(cfg.hidden, cfg.num_classes)

    def _flat_size(self) -> int:
        with torch.no_grad():
            probe = torch.zeros(1, self.conv1.in_channels, self.cfg.num_mel_bins, self.cfg.segment_frames)
            return int(self._features(probe).shape[1])

    def _features(self, segments: torch.Tensor) -> torch.Tensor:
        """``(N, channels, F, segment_frames)`` -> flattened conv features ``(N, K)``."""
        x = self.dropout(self.pool1(F.relu(self.conv1(segments))))
        return self.pool2(F.relu(self.conv2(x))).flatten(1)

    def segments(self, fbank: torch.Tensor) -> torch.Tensor:
        """``(B, T, F)`` -> ``(B, S, channels, F, segment_frames)`` (zero-padded if T is shorter)."""
        frames, bins = fbank.shape[1:]
        if bins != self.cfg.num_mel_bins:
            raise ValueError(f"expected {self.cfg.num_mel_bins} mel bins, got {bins}")
        length = self.cfg.segment_frames
        x = fbank.unsqueeze(1) if not self.cfg.use_deltas else torch.stack([fbank, deltas(fbank)], dim=1)
        if frames < length:
            x = F.pad(x, (0, 0, 0, length - frames))
        starts = segment_starts(x.shape[2], length, self.cfg.segment_hop)
        segs = torch.stack([x[:, :, s : s + length] for s in starts], dim=1)  # (B, S, ch, L, F)
        return segs.transpose(-1, -2)

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        segs = self.segments(fbank)
        batch, count = segs.shape[:2]
        h = self._features(segs.flatten(0, 1))
        h = self.dropout(F.relu(self.fc1(h)))
        h = self.dropout(F.relu(self.fc2(h)))
        return self.head(h).reshape(batch, count, -1).mean(dim=1)
