"""Batch augmentations on log-mel fbanks ``(B, T, F)``: time stretch, frequency shift, time shift, gain,
mixup or between-class mixing, SpecAugment.

Shift, gain and mixing act on un-normalised log energies (mixing in the power domain, as mixing
waveforms would); SpecAugment masks act on normalised features (masked to 0, the normalised mean).
``mixing = "bc"`` selects between-class learning (Tokozume et al. 2018) instead of mixup.
All randomness comes from the ``torch.Generator`` passed in, so a seed reproduces a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from audio_core.checks import check_fields, rule
from models.common import FeatureConfig

MIXINGS = ("mixup", "bc")


@dataclass
class AugmentConfig:
    """The ``[train.augment]`` table; each field's bounds and choices sit next to it."""

    time_stretch: float = rule(0.0, ge=0, le=0.5)  # stretch time by a factor in [1 - s, 1 + s] (0: off)
    freq_shift: int = rule(0, ge=0)  # shift the mel bins by up to this many either way, like a pitch shift
    time_shift_frac: float = rule(0.5, ge=0, le=1)  # circular shift by up to this share of the clip
    gain_db: float = rule(6.0, ge=0)
    mixup_alpha: float = rule(0.5, ge=0)  # 0: no mixing
    mixup_prob: float = rule(0.8, ge=0, le=1)  # the share of clips mixed (mixup or between-class)
    # mixup | bc (between-class: partners of another class, ratio r ~ U(0, 1))
    mixing: str = rule("mixup", choices=MIXINGS)
    freq_mask: int = rule(16, ge=0)
    time_mask: int = rule(48, ge=0)
    num_freq_masks: int = rule(2, ge=0)
    num_time_masks: int = rule(2, ge=0)

    def __post_init__(self) -> None:
        check_fields(self, "train.augment", ValueError)


def random_time_shift(
    x: torch.Tensor, max_frac: float, gen: torch.Generator, fixed: torch.Tensor | None = None
) -> torch.Tensor:
    """Circularly roll each clip by up to ``max_frac`` of its length in either direction; rows where
    ``fixed`` ``(B,)`` is True stay in place (their shift is drawn all the same)."""
    if max_frac <= 0:
        return x
    b, t, _ = x.shape
    limit = int(t * max_frac)
    shifts = torch.randint(-limit, limit + 1, (b,), generator=gen)
    if fixed is not None:
        shifts = torch.where(fixed, 0, shifts)
    idx = (torch.arange(t).unsqueeze(0) - shifts.unsqueeze(1)) % t  # (B, T)
    return torch.gather(x, 1, idx.unsqueeze(-1).expand_as(x))


def random_time_stretch(x: torch.Tensor, max_stretch: float, gen: torch.Generator) -> torch.Tensor:
    """Play each clip faster or slower by a factor ``r ~ U(1 - max_stretch, 1 + max_stretch)`` about its
    centre: frame ``t`` of the result is the clip at ``c + (t - c) / r`` (``c`` the centre; linear
    interpolation between frames, circular beyond the ends, as the time shift). The length is kept."""
    if max_stretch <= 0:
        return x
    b, t, _ = x.shape
    rate = 1 + (torch.rand(b, generator=gen) * 2 - 1) * max_stretch
    centre = (t - 1) / 2
    pos = centre + (torch.arange(t, dtype=torch.float32).unsqueeze(0) - centre) / rate.unsqueeze(1)  # (B, T)
    low = torch.floor(pos)
    frac = (pos - low).unsqueeze(-1)
    first = low.long() % t
    second = (first + 1) % t

    def frames(idx: torch.Tensor) -> torch.Tensor:
        return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[2]))

    return frames(first) * (1 - frac) + frames(second) * frac


def random_freq_shift(x: torch.Tensor, max_bins: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each clip's mel bins up or down by up to ``max_bins`` (an approximate pitch shift); the bins
    shifted in repeat the edge bin."""
    if max_bins <= 0:
        return x
    b, _, f = x.shape
    shifts = torch.randint(-max_bins, max_bins + 1, (b,), generator=gen)
    idx = (torch.arange(f).unsqueeze(0) - shifts.unsqueeze(1)).clamp(0, f - 1)  # (B, F)
    return torch.gather(x, 2, idx.unsqueeze(1).expand_as(x))


def random_gain(x: torch.Tensor, max_db: float, gen: torch.Generator) -> torch.Tensor:
    """Scale amplitude by ±``max_db``: an additive constant on log power."""
    if max_db <= 0:
        return x
    db = (torch.rand(x.shape[0], generator=gen) * 2 - 1) * max_db
    return x + (db * math.log(10) / 10).view(-1, 1, 1)


def mixup(
    x: torch.Tensor, y: torch.Tensor, alpha: float, prob: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each clip with a partner in the power domain; ``y`` are soft/multi-hot targets ``(B, C)``."""
    if alpha <= 0 or prob <= 0:
        return x, y
    b = x.shape[0]
    lam = label_shares("mixup", alpha, b, gen)
    apply = torch.rand(b, generator=gen) < prob
    lam = torch.where(apply, lam, torch.ones_like(lam))
    perm = torch.randperm(b, generator=gen)
    lx = lam.view(-1, 1, 1)
    mixed = torch.where(lx >= 1.0, x, power_mix(x, x[perm], *mixup_log_shares(lx)))
    y_mixed = lam.view(-1, 1) * y + (1 - lam.view(-1, 1)) * y[perm]
    return mixed, y_mixed


def mixup_log_shares(lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup's power shares of the two clips, as logs: ``λ`` and ``1 - λ`` (the label shares)."""
    return torch.log(lam), torch.log1p(-lam + 1e-12)


def bc_log_shares(
    r: torch.Tensor, gain1_db: torch.Tensor, gain2_db: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Between-class learning's power shares, as logs, for label share ``r`` of clip 1 and the clips'
    loudest-frame gains (``clip_gain_db``): the amplitude share ``p`` balances the gains, and the waveform
    mix is divided by ``sqrt(p² + (1 - p)²)`` (Tokozume et al. 2018)."""
    p = 1 / (1 + 10 ** ((gain1_db - gain2_db) / 20) * (1 - r) / r)  # amplitude share of clip 1
    scale = p**2 + (1 - p) ** 2
    return torch.log(p**2) - torch.log(scale), torch.log((1 - p) ** 2) - torch.log(scale)


def power_mix(
    x1: torch.Tensor, x2: torch.Tensor, log_share1: torch.Tensor, log_share2: torch.Tensor
) -> torch.Tensor:
    """Two log-mel fbanks mixed in the power domain with the given log power shares."""
    return torch.logaddexp(x1 + log_share1, x2 + log_share2)


def label_shares(mixing: str, alpha: float, n: int, gen: torch.Generator) -> torch.Tensor:
    """The first clips' label shares ``(n,)`` for ``n`` pairs: mixup ``max(λ, 1 - λ)`` with
    ``λ ~ Beta(α, α)``; between-class ``r ~ U(0, 1)`` (kept off 0 and 1)."""
    if mixing == "bc":
        return torch.rand(n, generator=gen).clamp(1e-3, 1 - 1e-3)
    lam = _beta(alpha, n, gen)
    return torch.maximum(lam, 1 - lam)


def _beta(alpha: float, n: int, gen: torch.Generator) -> torch.Tensor:
    """Beta(alpha, alpha) samples from a seeded generator (ratio of gammas via torch._standard_gamma)."""
    a = torch._standard_gamma(torch.full((n,), alpha), generator=gen)
    b = torch._standard_gamma(torch.full((n,), alpha), generator=gen)
    return a / (a + b)


def spec_augment(
    x: torch.Tensor, freq_mask: int, time_mask: int, n_freq: int, n_time: int, gen: torch.Generator
) -> torch.Tensor:
    """Zero ``n_freq`` frequency bands of width < ``freq_mask`` and ``n_time`` time spans < ``time_mask``."""
    b, t, f = x.shape
    keep = torch.ones(b, t, f, dtype=torch.bool)
    for _ in range(n_freq if freq_mask > 0 else 0):
        width = torch.randint(0, freq_mask, (b,), generator=gen)
        start = (torch.rand(b, generator=gen) * (f - width)).long()
        band = torch.arange(f).unsqueeze(0)
        hit = (band >= start.unsqueeze(1)) & (band < (start + width).unsqueeze(1))  # (B, F)
        keep &= ~hit.unsqueeze(1)
    for _ in range(n_time if time_mask > 0 else 0):
        width = torch.randint(0, time_mask, (b,), generator=gen)
        start = (torch.rand(b, generator=gen) * (t - width)).long()
        span = torch.arange(t).unsqueeze(0)
        hit = (span >= start.unsqueeze(1)) & (span < (start + width).unsqueeze(1))  # (B, T)
        keep &= ~hit.unsqueeze(2)
    return x * keep


def mix_clips(
    x: torch.Tensor,
    y: torch.Tensor,
    aug: AugmentConfig,
    gen: torch.Generator,
    features: FeatureConfig,
    c: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The configured mixing; ``y[:, :c]`` are the labels (any further columns are mixed alike)."""
    if aug.mixing == "bc":
        return between_class(x, y, mixing_classes(y[:, :c]), aug.mixup_prob, gen, features)
    return mixup(x, y, aug.mixup_alpha, aug.mixup_prob, gen)


def mixing_classes(labels: torch.Tensor) -> torch.Tensor:
    """Each row's class for picking between-class partners: its strongest label, or -1 for a row with
    none (background: "no class", a class of its own, so that it may partner with any labelled clip)."""
    best = labels.argmax(1)
    return torch.where(labels.sum(1) > 0, best, torch.full_like(best, -1))


def a_weighting_db(freq_hz: torch.Tensor) -> torch.Tensor:
    """IEC 61672 A-weighting in dB (0 dB at 1 kHz)."""
    f2 = freq_hz.double() ** 2
    ra = (12194.0**2 * f2**2) / (
        (f2 + 20.6**2) * torch.sqrt((f2 + 107.7**2) * (f2 + 737.9**2)) * (f2 + 12194.0**2)
    )
    return (20 * torch.log10(ra.clamp_min(1e-20)) + 2.0).float()


def mel_a_weights(features: FeatureConfig) -> torch.Tensor:
    """A-weighting as a power factor per mel bin ``(F,)``: each triangle's weighted mean over its FFT bins."""
    from audio_core.fbank import mel_banks, padded_window_size

    n_fft = padded_window_size(features.frame_length)
    banks = mel_banks(
        features.num_mel_bins, n_fft, features.sample_rate, features.low_freq, features.high_freq
    )
    freqs = torch.arange(banks.shape[1]) * features.sample_rate / n_fft
    power = 10 ** (a_weighting_db(freqs) / 10)
    return (banks @ power) / banks.sum(1).clamp_min(1e-12)


def clip_gain_db(x: torch.Tensor, features: FeatureConfig) -> torch.Tensor:
    """BC learning's gain: the loudest frame's A-weighted power in dB, per clip ``(B, T, F) -> (B,)``."""
    log_w = torch.log(mel_a_weights(features))
    frame_power = torch.logsumexp(x + log_w, dim=2)  # (B, T) natural log of power
    return frame_power.max(dim=1).values * 10 / math.log(10)


def between_class(
    x: torch.Tensor,
    y: torch.Tensor,
    classes: torch.Tensor,
    prob: float,
    gen: torch.Generator,
    features: FeatureConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Between-class mixing: each clip (with probability ``prob``) is mixed with a partner of another
    class at r ~ U(0, 1), the gains balanced as in BC learning, in the power domain; target
    ``r * y1 + (1 - r) * y2``. A clip with no partner of another class in the batch stays as it is."""
    b = x.shape[0]
    if prob <= 0 or b < 2:
        return x, y
    other = classes.unsqueeze(0) != classes.unsqueeze(1)  # (B, B)
    pick = torch.where(other, torch.rand(b, b, generator=gen), torch.full((b, b), -1.0))
    partner = pick.argmax(1)
    r = label_shares("bc", 0.0, b, gen)
    apply = (torch.rand(b, generator=gen) < prob) & other.any(1)
    gain = clip_gain_db(x, features)
    lp, lq = bc_log_shares(r, gain, gain[partner])
    mixed = power_mix(x, x[partner], lp.view(-1, 1, 1), lq.view(-1, 1, 1))
    mixed = torch.where(apply.view(-1, 1, 1), mixed, x)
    ratio = torch.where(apply, r, torch.ones_like(r)).view(-1, 1)
    return mixed, ratio * y + (1 - ratio) * y[partner]
