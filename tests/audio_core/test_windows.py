"""Windows and recurrent columns: streamed slices of computed frames equal offline fbank of their samples."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from audio_core.fbank import compute_fbank
from audio_core.front_end import FrontEnd, front_end
from audio_core.windows import ColumnPlan, WindowPlan, pad_with_silence
from models.common import FeatureConfig

CFG = FeatureConfig(num_mel_bins=64)
RATE = CFG.sample_rate


def _feed(front: FrontEnd, wave: np.ndarray, seed: int, finish: bool = True):
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < wave.size:
        n = int(rng.integers(1, 12000))
        out += front.accept(wave[i : i + n])
        i += n
    return out + front.finish() if finish else out


def _real_audio(esc50, clips: int) -> np.ndarray:
    return np.concatenate([esc50.read_mono(p) for p in esc50.clips(clips)])


def test_plan_validation():
    plan = WindowPlan.from_seconds(5.0, 1.0, CFG)
    assert (plan.window_samples, plan.hop_samples, plan.frames_per_window) == (80000, 16000, 498)
    with pytest.raises(ValueError, match="multiple of the frame shift"):
        WindowPlan.from_seconds(5.0, 0.015, CFG)
    with pytest.raises(ValueError, match="at least one frame"):
        WindowPlan.from_seconds(0.01, 0.01, CFG)
    with pytest.raises(ValueError, match="positive"):
        WindowPlan.from_seconds(5.0, 0.0, CFG)
    for bad in (float("inf"), float("nan"), float("-inf")):  # never OverflowError from round()
        with pytest.raises(ValueError, match="positive and finite"):
            WindowPlan.from_seconds(5.0, bad, CFG)
        with pytest.raises(ValueError, match="positive and finite"):
            WindowPlan.from_seconds(bad, 1.0, CFG)
    for window_s in (5.00001, 4.999, 2.345):  # a window is whole frame shifts, as a checkpoint's is
        with pytest.raises(ValueError, match="window_s must be a multiple of the frame shift"):
            WindowPlan.from_seconds(window_s, 1.0, CFG)


@pytest.mark.parametrize(("window_s", "hop_s"), [(5.0, 1.0), (2.0, 0.5), (1.0, 1.5)])
def test_streaming_windows_equal_offline_fbank_of_their_samples(esc50, window_s, hop_s):
    wave = _real_audio(esc50, 3)[: 14 * RATE + 1234]  # 14.08 s: the last hop leaves a tail
    plan = WindowPlan.from_seconds(window_s, hop_s, CFG)
    windows = _feed(front_end(plan), wave, seed=0)
    regular = [w for w in windows if not w.tail]
    expected = (wave.size - plan.window_samples) // plan.hop_samples + 1
    assert [w.index for w in regular] == list(range(expected))
    for w in windows:
        start = round(w.t_start * RATE)
        if not w.tail:
            assert start == w.index * plan.hop_samples
            assert w.t_start == pytest.approx(w.index * hop_s)
        assert w.t_end - w.t_start == pytest.approx(window_s)
        assert w.end_sample == start + plan.window_samples
        reference = compute_fbank(wave[start : start + plan.window_samples], CFG)
        assert w.features.shape == reference.shape == (plan.frames_per_window, 64)
        torch.testing.assert_close(w.features, reference, atol=1e-5, rtol=0)


def test_the_tail_window_is_aligned_to_the_end_on_the_frame_grid(esc50):
    wave = _real_audio(esc50, 2)[: 7 * RATE + 555]
    plan = WindowPlan.from_seconds(5.0, 1.0, CFG)
    windows = _feed(front_end(plan), wave, seed=1)
    assert [w.t_start for w in windows[:-1]] == [0.0, 1.0, 2.0]
    tail = windows[-1]
    start = round(tail.t_start * RATE)
    assert tail.tail and tail.index == 3
    assert start % CFG.frame_shift == 0
    assert 0 <= wave.size - (start + plan.window_samples) < CFG.frame_shift
    torch.testing.assert_close(
        tail.features, compute_fbank(wave[start : start + 80000], CFG), atol=1e-5, rtol=0
    )


def test_no_tail_when_the_last_window_reaches_the_end(esc50):
    wave = _real_audio(esc50, 2)[: 7 * RATE]
    windows = _feed(front_end(WindowPlan.from_seconds(5.0, 1.0, CFG)), wave, seed=2)
    assert [w.t_start for w in windows] == [0.0, 1.0, 2.0] and not any(w.tail for w in windows)


def test_a_stream_shorter_than_a_window_is_padded_with_silence(esc50):
    wave = esc50.read_mono(esc50.clips(1)[0])[: int(2.3 * RATE)]
    plan = WindowPlan.from_seconds(5.0, 1.0, CFG)
    front = front_end(plan)
    assert _feed(front, wave, seed=3, finish=False) == []
    (window,) = front.finish()
    assert (window.t_start, window.t_end, window.index) == (0.0, 5.0, 0)
    assert window.padded_s == pytest.approx(2.7) and window.end_sample == wave.size
    padded = np.concatenate([wave, np.zeros(plan.window_samples - wave.size, np.float32)])
    torch.testing.assert_close(window.features, compute_fbank(padded, CFG), atol=1e-5, rtol=0)
    assert front.finish() == []  # already flushed
    assert front_end(plan).finish() == []  # nothing heard, nothing to classify


def test_level_is_the_rms_of_the_window_in_dbfs():
    t = np.arange(3 * RATE) / RATE
    sine = np.sin(2 * np.pi * 1000 * t).astype(np.float32)  # full scale: -3.01 dBFS
    quiet = np.concatenate([np.zeros(RATE, np.float32), 0.01 * sine[: 2 * RATE]])
    plan = WindowPlan.from_seconds(1.0, 1.0, CFG)
    loud = _feed(front_end(plan), sine, seed=4)
    assert [round(w.level_dbfs, 2) for w in loud] == [-3.01] * 3
    levels = [w.level_dbfs for w in _feed(front_end(plan), quiet, seed=5)]
    assert levels[0] == -120.0 and levels[1] == pytest.approx(-43.01, abs=0.01)


def test_memory_stays_flat_on_a_long_stream():
    rng = np.random.default_rng(6)
    front = front_end(WindowPlan.from_seconds(5.0, 1.0, CFG))
    sizes = []
    for _ in range(120):  # two minutes, one second at a time
        front.accept((0.1 * rng.standard_normal(RATE)).astype(np.float32))
        sizes.append(front._frames.capacity + front._energy.capacity)
    assert front.next_index == 116
    assert max(sizes) == sizes[0] == 2 * (2 * 498 + 64)  # never grew


def test_recurrent_columns_equal_offline_frames_and_the_tail_after_the_last_whole_one_is_measured(esc50):
    wave = _real_audio(esc50, 1)[: 3 * RATE + 777]
    plan = ColumnPlan(16, CFG)
    front = front_end(plan)
    columns = _feed(front, wave, seed=7)
    frames = CFG.num_frames(wave.size)
    assert frames % 16 and len(columns) == frames // 16  # no column padded with silence
    reference = compute_fbank(wave, CFG)
    for k, col in enumerate(columns):
        assert col.index == k and col.padded_s == 0
        start, end = plan.span(k)
        assert (col.t_start, col.t_end) == (start / RATE, end / RATE)
        torch.testing.assert_close(col.features, reference[k * 16 : (k + 1) * 16], atol=1e-5, rtol=0)
    assert front.tail_s == (wave.size - plan.span(len(columns) - 1)[1]) / RATE > 0


def test_a_very_short_stream_still_gives_one_column():
    front = front_end(ColumnPlan(16, CFG))
    assert front.accept(np.full(100, 0.1, np.float32)) == []
    (col,) = front.finish()
    assert col.index == 0 and col.features.shape == (16, 64)


@pytest.mark.parametrize(("hop_s", "position", "count"), [(1.0, 1, 2), (1.0, 3, 16), (0.5, 2, 3)])
def test_staggered_windows_stream_equal_offline_the_first_led_in_by_silence(esc50, hop_s, position, count):
    wave = _real_audio(esc50, 3)[: 12 * RATE + 777]
    base = WindowPlan.from_seconds(5.0, hop_s, CFG)
    plan = base.staggered(position, count)
    lead = plan.lead_samples
    assert 0 < lead < plan.hop_samples and lead % CFG.frame_shift == 0
    assert lead == (base.hop_samples * position // count) // CFG.frame_shift * CFG.frame_shift
    windows = _feed(front_end(plan), wave, seed=position)
    starts = plan.starts(wave.size)  # the offline placement, the first one before the stream
    assert starts[0] == -lead and starts[1] == plan.hop_samples - lead
    assert [round(w.t_start * RATE) for w in windows] == [0, *starts[1:]]
    assert windows[0].lead_s == lead / RATE and all(w.lead_s == 0 for w in windows[1:])
    assert windows[0].t_end == (plan.window_samples - lead) / RATE
    regular = [s for s, w in zip(starts, windows, strict=True) if not w.tail]
    assert all(b - a == plan.hop_samples for a, b in itertools.pairwise(regular))
    led_in = np.concatenate([np.zeros(lead, np.float32), wave])  # what the stream's front end was fed
    for w, start in zip(windows, starts, strict=True):
        reference = compute_fbank(led_in[start + lead : start + lead + plan.window_samples], CFG)
        torch.testing.assert_close(w.features, reference, atol=1e-5, rtol=0)
        assert w.end_sample == min(start + plan.window_samples, wave.size)
    assert base.staggered(0, count) == base and "staggered" in plan.describe()


def test_staggered_first_windows_end_spread_over_one_hop():
    base = WindowPlan.from_seconds(5.0, 1.0, CFG)
    ends = [base.staggered(p, 16).start_sample(0) + base.window_samples for p in range(16)]
    assert ends[0] == base.window_samples and len(set(ends)) == 16
    assert max(ends) - min(ends) < base.hop_samples


@pytest.mark.parametrize(("seconds", "count"), [(3.0, 1), (4.7, 2)])
def test_a_short_staggered_stream_is_one_window_from_its_start_as_classify_scores_it(esc50, seconds, count):
    """A stream shorter than a staggered plan's led-in first window (3 s, lead 0.5 s) is the window classify
    scores: its audio from 0, silence after it to one window; it was led in by the stagger's silence, which
    changed a short clip's label in a replay of several files. One long enough to fill the led-in window
    (4.7 s) keeps it, with a tail window after."""
    wave = _real_audio(esc50, 1)[: int(seconds * RATE)]
    plan = WindowPlan.from_seconds(5.0, 1.0, CFG).staggered(1, 2)  # lead 0.5 s
    lead = plan.lead_samples
    windows = _feed(front_end(plan), wave, seed=1)
    starts = plan.starts(wave.size)
    assert len(windows) == len(starts) == count  # 4.7 s: the led-in window ends at 4.5 s, a tail follows
    if count == 1:
        assert starts == [0] and windows[0].lead_s == 0 and (windows[0].t_start, windows[0].t_end) == (0, 5.0)
        assert windows[0].padded_s == (plan.window_samples - wave.size) / RATE
        reference = compute_fbank(pad_with_silence(wave, plan.window_samples), CFG)
        torch.testing.assert_close(windows[0].features, reference, atol=1e-5, rtol=0)
        return
    assert windows[0].lead_s == lead / RATE and windows[0].padded_s == 0
    fed = np.concatenate([np.zeros(lead, np.float32), wave])
    for w, start in zip(windows, starts, strict=True):
        assert w.lead_s == max(-start, 0) / RATE
        reference = compute_fbank(fed[start + lead : start + lead + plan.window_samples], CFG)
        torch.testing.assert_close(w.features, reference, atol=1e-5, rtol=0)


def test_a_lead_must_lie_on_the_frame_grid_below_the_hop():
    plan = WindowPlan.from_seconds(5.0, 1.0, CFG)
    for bad in (-CFG.frame_shift, plan.hop_samples, CFG.frame_shift + 1):
        with pytest.raises(ValueError, match="lead"):
            WindowPlan(plan.window_samples, plan.hop_samples, CFG, lead_samples=bad)
