"""The Piczak-style CNN: deltas, segmenting and per-segment averaging, checked against plain restatements."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.cnn_piczak import PiczakCNN, PiczakConfig, deltas, segment_starts

SMALL = {"num_classes": 5, "channels": 8, "hidden": 32}


def test_deltas_follow_the_regression_formula(real_windows):
    x = real_windows[:1].numpy()[0]  # (T, F)
    padded = np.concatenate([x[:1], x[:1], x, x[-1:], x[-1:]])  # edge replication, reach 2
    expected = np.stack(
        [(padded[t + 3] - padded[t + 1] + 2 * (padded[t + 4] - padded[t])) / 10 for t in range(len(x))]
    )
    np.testing.assert_allclose(deltas(real_windows[:1])[0].numpy(), expected, atol=1e-5)


def test_segment_starts_cover_the_window():
    assert segment_starts(498, 41, 20) == [*range(0, 458, 20), 457]
    assert segment_starts(41, 41, 20) == [0]
    assert segment_starts(30, 41, 20) == [0]


def test_forward_is_the_mean_of_per_segment_logits(real_windows):
    torch.manual_seed(0)
    model = PiczakCNN(PiczakConfig(**SMALL)).eval()
    x = real_windows[:2]
    stacked = torch.stack([x, deltas(x)], dim=1)  # (B, 2, T, F)
    with torch.no_grad():
        per_segment = []
        for start in segment_starts(x.shape[1], 41, 20):
            seg = stacked[:, :, start : start + 41].transpose(-1, -2)  # (B, 2, F, 41)
            h = model._features(seg)
            per_segment.append(model.head(torch.relu(model.fc2(torch.relu(model.fc1(h))))))
        torch.testing.assert_close(model(x), torch.stack(per_segment).mean(0), rtol=1e-5, atol=1e-5)


def test_paper_shapes_and_short_inputs():
    cfg = PiczakConfig()
    assert cfg.freq_kernel == 122 and cfg.channels == 80 and cfg.hidden == 5000
    model = PiczakCNN(PiczakConfig(**SMALL, use_deltas=False)).eval()
    assert model.conv1.in_channels == 1
    with torch.no_grad():
        assert model(torch.randn(3, 30, 128)).shape == (3, 5)  # shorter than a segment: zero-padded
    with pytest.raises(ValueError, match="mel bins"):
        model(torch.randn(1, 100, 64))
    with pytest.raises(ValueError, match="freq_kernel"):
        PiczakConfig(num_mel_bins=64, freq_kernel=63)
