"""Kaldi log-mel filterbank in torch, offline and incremental (torchaudio.compliance.kaldi.fbank semantics).

Each frame depends only on its own ``frame_length`` samples (per-frame DC removal, pre-emphasis, window,
power spectrum, mel banks, log), so the streaming extractor keeps the samples not yet consumed and emits
every frame exactly once; its output equals the offline one on the same audio.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from models.common import FeatureConfig

_EPS = float(torch.finfo(torch.float32).eps)


def _mel(freq: torch.Tensor) -> torch.Tensor:
    return 1127.0 * (1.0 + freq / 700.0).log()


@lru_cache(maxsize=16)
def mel_banks(
    num_bins: int, padded_window: int, sample_rate: int, low_freq: float, high_freq: float
) -> torch.Tensor:
    """Triangular mel filters (num_bins, padded_window // 2 + 1) as in Kaldi (last column, Nyquist, zero).

    Computed in float32 in the same order as torchaudio so that log energies near the floor agree.
    """
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    num_fft_bins = padded_window // 2
    bin_width = sample_rate / padded_window
    mel_low = 1127.0 * math.log(1.0 + low_freq / 700.0)
    mel_high = 1127.0 * math.log(1.0 + high_freq / 700.0)
    delta = (mel_high - mel_low) / (num_bins + 1)
    idx = torch.arange(num_bins).unsqueeze(1)
    left = mel_low + idx * delta
    center = mel_low + (idx + 1.0) * delta
    right = mel_low + (idx + 2.0) * delta
    mel = _mel(bin_width * torch.arange(num_fft_bins)).unsqueeze(0)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.max(torch.zeros(1), torch.min(up, down))
    return torch.nn.functional.pad(banks, (0, 1)).to(torch.float32)


@lru_cache(maxsize=16)
def frame_window(window_type: str, length: int) -> torch.Tensor:
    """Analysis window of ``length`` samples (Kaldi names)."""
    if window_type == "hanning":
        return torch.hann_window(length, periodic=False)
    if window_type == "povey":
        return torch.hann_window(length, periodic=False).pow(0.85)
    if window_type == "hamming":
        return torch.hamming_window(length, periodic=False, alpha=0.54, beta=0.46)
    if window_type == "rectangular":
        return torch.ones(length, dtype=torch.float32)
    if window_type == "blackman":
        n = torch.arange(length, dtype=torch.float32)
        a = 2 * math.pi / (length - 1)
        return 0.42 - 0.5 * torch.cos(a * n) + 0.08 * torch.cos(2 * a * n)
    raise ValueError(f"unknown window_type {window_type!r}")


def padded_window_size(frame_length: int) -> int:
    return 1 << (frame_length - 1).bit_length()


FBANK_BLOCK_FRAMES = 512  # frames per pass: a block's spectra stay in the CPU cache


@lru_cache(maxsize=16)
def _interleaved_banks(
    num_bins: int, padded_window: int, sample_rate: int, low_freq: float, high_freq: float
) -> torch.Tensor:
    """``mel_banks`` transposed with each FFT bin's row twice ``(2 * bins, num_bins)``: applied to the
    squared real and imaginary parts side by side, it sums ``re² + im²`` and the mel weighting in one
    matrix product."""
    banks = mel_banks(num_bins, padded_window, sample_rate, low_freq, high_freq)
    return banks.T.repeat_interleave(2, dim=0).contiguous()


def fbank_frames(frames: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """Log-mel energies of already cut frames ``(N, frame_length)`` -> ``(N, num_mel_bins)``.

    The fast path of ``fbank_frames_reference`` (the same steps; they agree to float32 round-off): blocks of
    ``FBANK_BLOCK_FRAMES`` frames, pre-emphasis without a shifted copy, the power spectrum folded into the
    mel product."""
    if frames.shape[0] == 0:
        return torch.zeros(0, cfg.num_mel_bins)
    if frames.shape[0] <= FBANK_BLOCK_FRAMES:
        return _fbank_block(frames, cfg)
    return torch.cat(
        [
            _fbank_block(frames[i : i + FBANK_BLOCK_FRAMES], cfg)
            for i in range(0, frames.shape[0], FBANK_BLOCK_FRAMES)
        ]
    )


def _fbank_block(frames: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    x = frames.to(torch.float32)
    if cfg.remove_dc_offset:
        x = x - x.mean(dim=1, keepdim=True)
    if cfg.preemphasis != 0.0:  # y[t] = x[t] - p x[t-1], and y[0] = x[0] - p x[0]
        y = torch.empty_like(x)
        y[:, 1:] = torch.sub(x[:, 1:], x[:, :-1], alpha=cfg.preemphasis)
        y[:, :1] = x[:, :1] * (1.0 - cfg.preemphasis)
        x = y
    x = x * frame_window(cfg.window_type, cfg.frame_length)
    n_fft = padded_window_size(cfg.frame_length)
    squares = torch.view_as_real(torch.fft.rfft(x, n=n_fft)).square().flatten(1)  # (N, 2 * bins): re², im²
    banks = _interleaved_banks(cfg.num_mel_bins, n_fft, cfg.sample_rate, cfg.low_freq, cfg.high_freq)
    return torch.clamp(torch.mm(squares, banks), min=_EPS).log()


def fbank_frames_reference(frames: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """The plain definition of ``fbank_frames`` (Kaldi's steps one by one), kept for the tests."""
    x = frames.to(torch.float32)
    if cfg.remove_dc_offset:
        x = x - x.mean(dim=1, keepdim=True)
    if cfg.preemphasis != 0.0:
        previous = torch.cat([x[:, :1], x[:, :-1]], dim=1)
        x = x - cfg.preemphasis * previous
    x = x * frame_window(cfg.window_type, cfg.frame_length)
    n_fft = padded_window_size(cfg.frame_length)
    spectrum = torch.fft.rfft(torch.nn.functional.pad(x, (0, n_fft - x.shape[1]))).abs().pow(2.0)
    banks = mel_banks(cfg.num_mel_bins, n_fft, cfg.sample_rate, cfg.low_freq, cfg.high_freq)
    return torch.clamp(torch.mm(spectrum, banks.T), min=_EPS).log()


def compute_fbank(wave: torch.Tensor | np.ndarray, cfg: FeatureConfig) -> torch.Tensor:
    """Offline fbank of mono samples in [-1, 1] at ``cfg.sample_rate`` -> ``(num_frames, num_mel_bins)``."""
    samples = torch.as_tensor(np.asarray(wave, dtype=np.float32)).reshape(-1)
    n = cfg.num_frames(samples.numel())
    if n == 0:
        return torch.zeros(0, cfg.num_mel_bins)
    frames = samples.unfold(0, cfg.frame_length, cfg.frame_shift)[:n]
    return fbank_frames(frames, cfg)


class StreamingFbank:
    """Incremental fbank: feed any number of samples, get the frames that became complete.

    ``frames_emitted`` counts frames so far; frame ``k`` covers samples ``[k*shift, k*shift + length)``.
    """

    def __init__(self, cfg: FeatureConfig) -> None:
        self.cfg = cfg
        self._pending = np.zeros(0, dtype=np.float32)
        self.frames_emitted = 0

    def accept(self, samples: np.ndarray) -> torch.Tensor:
        """Append mono samples; return the new frames ``(n, num_mel_bins)`` (possibly n = 0)."""
        data = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._pending = np.concatenate([self._pending, data]) if self._pending.size else data.copy()
        n = self.cfg.num_frames(self._pending.size)
        if n == 0:
            return torch.zeros(0, self.cfg.num_mel_bins)
        shift = self.cfg.frame_shift
        frames = torch.from_numpy(self._pending).unfold(0, self.cfg.frame_length, shift)[:n]
        out = fbank_frames(frames, self.cfg)
        self._pending = self._pending[n * shift :].copy()
        self.frames_emitted += n
        return out
