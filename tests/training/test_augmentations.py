"""Augmentations on real ESC-50 fbanks: each checked against what it must do, and seeded."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from esc50_subset import small_esc50_rows

from models.common import FeatureConfig
from training.augment import (
    mixup,
    random_freq_shift,
    random_gain,
    random_time_shift,
    random_time_stretch,
    spec_augment,
)
from training.cache import cached_fbanks
from training.clips import Clip


@pytest.fixture(scope="module")
def fbanks(esc50_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    rows = small_esc50_rows(("dog", "rooster", "rain", "sea_waves"), 2, (1,))
    clips = [Clip(esc50_root / "audio" / r["filename"], (i // 2,), 1) for i, r in enumerate(rows)]
    x = cached_fbanks(clips, FeatureConfig(num_mel_bins=64), None, 300)
    y = torch.nn.functional.one_hot(torch.tensor([c.targets[0] for c in clips]), 4).float()
    return torch.from_numpy(x), y


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_time_shift_is_a_circular_roll_within_the_limit(fbanks) -> None:
    x, _ = fbanks
    out = random_time_shift(x, 0.2, _gen())
    limit = int(x.shape[1] * 0.2)
    shifts = []
    for b in range(x.shape[0]):
        found = [s for s in range(-limit, limit + 1) if torch.equal(torch.roll(x[b], s, dims=0), out[b])]
        assert found, f"clip {b} is not a roll of its input"
        shifts.append(found[0])
    assert len(set(shifts)) > 1
    assert torch.equal(random_time_shift(x, 0.0, _gen()), x)
    assert torch.equal(random_time_shift(x, 0.2, _gen(5)), random_time_shift(x, 0.2, _gen(5)))


def test_freq_shift_moves_the_mel_bins_and_repeats_the_edge(fbanks) -> None:
    x, _ = fbanks
    out = random_freq_shift(x, 4, _gen())
    bins = x.shape[2]
    shifts = []
    for b in range(x.shape[0]):
        found = []
        for s in range(-4, 5):
            idx = (torch.arange(bins) - s).clamp(0, bins - 1)
            if torch.equal(x[b][:, idx], out[b]):
                found.append(s)
        assert found, f"clip {b} is not a shift of its bins"
        shifts.append(found[0])
    assert len(set(shifts)) > 1
    generator = _gen(3)
    assert random_freq_shift(x, 0, generator) is x
    assert torch.equal(generator.get_state(), _gen(3).get_state())  # off: nothing drawn, recipes unchanged


def test_time_stretch_resamples_about_the_centre(fbanks) -> None:
    x, _ = fbanks
    out = random_time_stretch(x, 0.2, _gen())
    assert out.shape == x.shape
    assert out.min() >= x.min() - 1e-5 and out.max() <= x.max() + 1e-5  # interpolation stays in range
    assert not torch.allclose(out, x)
    ramp = torch.arange(300, dtype=torch.float32).view(1, 300, 1).expand(2, 300, 3)
    stretched = random_time_stretch(ramp, 0.2, _gen(1))[:, :, 0]  # frame t shows the clip at c + (t - c) / r
    torch.testing.assert_close((stretched[:, 149] + stretched[:, 150]) / 2, torch.full((2,), 149.5))
    slope = stretched[:, 140:160].diff(dim=1)  # 1 / r
    assert bool(((slope > 1 / 1.2 - 1e-4) & (slope < 1 / 0.8 + 1e-4)).all())
    generator = _gen(3)
    assert random_time_stretch(x, 0.0, generator) is x
    assert torch.equal(generator.get_state(), _gen(3).get_state())


def test_gain_adds_one_log_power_offset_per_clip(fbanks) -> None:
    x, _ = fbanks
    out = random_gain(x, 6.0, _gen())
    offsets = (out - x).reshape(x.shape[0], -1)
    assert torch.allclose(offsets, offsets[:, :1].expand_as(offsets), atol=1e-5)
    assert offsets[:, 0].abs().max() <= 6.0 * math.log(10) / 10 + 1e-6
    assert offsets[:, 0].std() > 0


def test_mixup_mixes_power_and_targets_with_the_same_weight(fbanks) -> None:
    x, y = fbanks
    out, y_mixed = mixup(x, y, alpha=0.5, prob=1.0, gen=_gen(1))
    assert torch.allclose(y_mixed.sum(dim=1), torch.ones(x.shape[0]))
    power = x.double().exp()
    mixed_any = False
    for b in range(x.shape[0]):
        lam = float(y_mixed[b, y[b].argmax()])
        assert lam >= 0.5 - 1e-6
        if lam > 1 - 1e-6:
            continue
        expected = [torch.log(lam * power[b] + (1 - lam) * power[p]) for p in range(x.shape[0])]
        errors = [float((e - out[b].double()).abs().max()) for e in expected]
        partner = int(np.argmin(errors))
        assert errors[partner] < 1e-4  # log of the weighted sum of the two clips' power
        assert sorted(errors)[1] > 0.1  # and no other partner would fit
        assert torch.allclose(y_mixed[b], lam * y[b] + (1 - lam) * y[partner], atol=1e-6)
        mixed_any = True
    assert mixed_any
    same, y_same = mixup(x, y, alpha=0.5, prob=0.0, gen=_gen(1))
    assert torch.equal(same, x) and torch.equal(y_same, y)


def test_spec_augment_masks_whole_bands_and_spans(fbanks) -> None:
    x, _ = fbanks
    x = x + 100.0  # no exact zeros before masking
    out = spec_augment(x, freq_mask=10, time_mask=40, n_freq=2, n_time=2, gen=_gen(2))
    zero = out == 0
    assert torch.equal(out[~zero], x[~zero])
    for b in range(x.shape[0]):
        full_bins = zero[b].all(dim=0)  # (F,) bins masked at every time
        full_frames = zero[b].all(dim=1)  # (T,) frames masked at every bin
        explained = full_bins.unsqueeze(0) | full_frames.unsqueeze(1)
        assert torch.equal(zero[b], explained)  # nothing masked outside whole bands and spans
        assert int(full_bins.sum()) <= 2 * 9 and int(full_frames.sum()) <= 2 * 39
    assert zero.any()
    again = spec_augment(x, freq_mask=10, time_mask=40, n_freq=2, n_time=2, gen=_gen(2))
    assert torch.equal(again, out)
