"""Device outages: streaming across a gap equals offline classification of the two stretches apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from zmq_helpers import validate

from audio_core.fbank import compute_fbank
from audio_core.front_end import front_end
from audio_core.resample import StreamingResampler, resample_offline
from audio_core.windows import WindowPlan
from models.common import FeatureConfig
from streamd import messages
from streamd.gaps import LostInterval, SegmentedFrontEnd, gap_status

CFG = FeatureConfig(num_mel_bins=64)
RATE = CFG.sample_rate


def _same_rate(chunk: np.ndarray, last: bool = False) -> np.ndarray:
    return chunk


def _offline(plan: WindowPlan, wave: np.ndarray) -> list:
    front = front_end(plan)
    return front.accept(wave) + front.finish()


@pytest.mark.parametrize(("window_s", "hop_s"), [(5.0, 1.0), (2.0, 0.5)])
def test_streaming_across_a_gap_equals_offline_on_each_stretch(esc50, window_s, hop_s) -> None:
    wave = np.concatenate([esc50.read_mono(p) for p in esc50.clips(3)])[: 14 * RATE]
    before, after = wave[: 6 * RATE + 4321], wave[6 * RATE + 4321 :]
    lost = round(2.7 * RATE)
    plan = WindowPlan.from_seconds(window_s, hop_s, CFG)
    front = SegmentedFrontEnd(plan)
    rng = np.random.default_rng(0)
    windows, i = [], 0
    gaps = [(before.size, lost)]  # reported before the reader reaches it: it waits for its chunk
    while i < wave.size:
        n = int(rng.integers(1, 12000))
        windows += front.accept_chunk(i, wave[i : i + n], _same_rate, gaps, RATE)
        gaps = []
        i += n
    windows += front.finish()

    first, second = _offline(plan, before), _offline(plan, after)
    assert len(windows) == len(first) + len(second)
    shift_s = (before.size + lost) / RATE
    for k, (got, want) in enumerate(zip(windows, first + second, strict=True)):
        later = k >= len(first)
        assert got.index == k
        assert got.t_start == pytest.approx(want.t_start + (shift_s if later else 0.0))
        assert got.t_end == pytest.approx(want.t_end + (shift_s if later else 0.0))
        assert got.end_sample == want.end_sample + (before.size if later else 0)
        assert got.tail == want.tail and got.level_dbfs == pytest.approx(want.level_dbfs)
        assert torch.allclose(got.features, want.features, atol=1e-4)  # chunking changes only rounding
        # and the plain way: the fbank of exactly the samples the window covers, on one side of the gap
        segment = after if later else before
        start = round(want.t_start * RATE)
        reference = compute_fbank(segment[start : start + plan.window_samples], CFG)
        assert torch.allclose(got.features, reference, atol=1e-3)
    gap_start, gap_end = before.size / RATE, shift_s
    assert all(w.t_end <= gap_start + 1e-9 or w.t_start >= gap_end - 1e-9 for w in windows)  # none spans it
    assert first[-1].tail or first[-1].t_end == pytest.approx(gap_start)  # the stretch's end is classified

    assert front.samples == wave.size + lost  # the stream clock runs on through the outage
    assert front.counters() == {"samples": wave.size, "outage_s": pytest.approx(2.7), "outages": 1}
    assert front.take_intervals() == [LostInterval(gap_start, gap_end)] and front.take_intervals() == []


def test_a_gap_status_carries_the_lost_interval() -> None:
    interval = LostInterval(12.5, 18.75)
    msg = gap_status("mic", interval, messages.empty_counters() | {"outage_s": 6.25, "outages": 1})
    validate(msg)
    assert (msg["state"], msg["t_start"], msg["t_end"]) == ("running", 12.5, 18.75)
    assert msg["message"] == (
        "device outage: no audio from 12.500 s to 18.750 s of the stream (6.250 s lost); "
        "the stream clock skips it and no window spans it"
    )


def test_no_gap_changes_nothing(esc50) -> None:
    wave = esc50.read_mono(esc50.clips(1)[0])
    plan = WindowPlan.from_seconds(2.0, 0.5, CFG)
    front = SegmentedFrontEnd(plan)
    got = front.accept_chunk(0, wave, _same_rate, [], RATE) + front.gap(0) + front.finish()
    want = _offline(plan, wave)
    assert [(w.index, w.t_start, w.end_sample) for w in got] == [
        (w.index, w.t_start, w.end_sample) for w in want
    ]
    assert front.counters() == {"samples": wave.size, "outage_s": 0.0, "outages": 0}


def test_at_another_rate_the_audio_before_a_gap_is_classified_whole(esc50) -> None:
    """The resampler's filter holds the last ~20 ms of what it was given: at a gap they end the stretch
    (they used to be dropped, time shifting by that much at every reconnect), and the audio after the gap
    is resampled afresh: each stretch as the offline resampling of it alone."""
    native = 44100
    wave = resample_offline(np.concatenate([esc50.read_mono(p) for p in esc50.clips(2)]), RATE, native)
    before, after = wave[: 3 * native + 777], wave[3 * native + 777 :]
    plan = WindowPlan.from_seconds(2.0, 0.5, CFG)
    front, resampler = SegmentedFrontEnd(plan), StreamingResampler(native, RATE)
    windows, i, gaps = [], 0, [(before.size, native)]  # one second lost
    while i < wave.size:
        windows += front.accept_chunk(i, wave[i : i + 4410], resampler.process, gaps, native)
        gaps, i = [], i + 4410
    windows += front.accept(resampler.process(np.zeros(0, np.float32), last=True)) + front.finish()
    first, second = resample_offline(before, native, RATE), resample_offline(after, native, RATE)
    assert front.counters()["samples"] == first.size + second.size  # nothing lost at the gap
    want = _offline(plan, first) + _offline(plan, second)
    assert [w.t_end for w in windows] == pytest.approx(
        [
            w.t_end + (1.0 + first.size / RATE if k >= len(_offline(plan, first)) else 0.0)
            for k, w in enumerate(want)
        ]
    )
    for got, ref in zip(windows, want, strict=True):
        assert torch.allclose(got.features, ref.features, atol=1e-3)


def test_a_stretch_shorter_than_a_window_before_a_gap_ends_where_its_audio_did(esc50) -> None:
    wave = esc50.read_mono(esc50.clips(1)[0])
    short, after = wave[: RATE + 123], wave[RATE + 123 :]
    plan = WindowPlan.from_seconds(2.0, 0.5, CFG)
    front = SegmentedFrontEnd(plan)
    windows = front.accept_chunk(0, wave, _same_rate, [(short.size, RATE // 2)], RATE) + front.finish()
    gap_start, gap_end = short.size / RATE, (short.size + RATE // 2) / RATE
    padded = windows[0]
    assert padded.padded_s == pytest.approx(2.0 - gap_start) and padded.t_end == pytest.approx(gap_start)
    assert torch.allclose(padded.features, _offline(plan, short)[0].features, atol=1e-4)  # padded as offline
    assert all(w.t_end <= gap_start + 1e-9 or w.t_start >= gap_end - 1e-9 for w in windows)  # none spans it
    assert len(windows) == 1 + len(_offline(plan, after))
