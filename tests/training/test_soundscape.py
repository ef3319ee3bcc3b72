"""Soundscape building on real ESC-50 clips, and the window / onset-latency scoring."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from esc50_subset import small_esc50_rows

from training.soundscape import (
    Event,
    audible_span,
    build_soundscape,
    load_clips,
    order_without_repeats,
    pick_clips,
)
from training.soundscape_scoring import (
    WindowPrediction,
    pool_reports,
    predictions_from_messages,
    score_stream,
    window_truth,
)
from training.streaming_eval import stream_table_markdown

SR = 16000


@pytest.fixture(scope="module")
def real_clips(esc50_root: Path) -> list[tuple[np.ndarray, str, str]]:
    rows = small_esc50_rows(("dog", "rooster", "clock_tick"), 2, (1,))
    return load_clips([(esc50_root / "audio" / r["filename"], r["category"]) for r in rows], SR)


def test_audible_span_finds_a_tone_burst() -> None:
    wave = np.zeros(3 * SR, dtype=np.float32)
    t = np.arange(int(0.5 * SR)) / SR
    wave[SR : SR + t.size] = 0.5 * np.sin(2 * np.pi * 440 * t)
    start, end = audible_span(wave, SR)
    assert start == pytest.approx(1.0, abs=0.021) and end == pytest.approx(1.5, abs=0.021)
    assert audible_span(np.zeros(SR), SR) == (0.0, 0.0)


def test_order_without_repeats() -> None:
    rng = np.random.default_rng(0)
    labels = ["a"] * 4 + ["b"] * 3 + ["c"] * 2
    for _ in range(20):
        order = order_without_repeats(labels, rng)
        assert sorted(order) == list(range(len(labels)))
        assert sum(labels[i] == labels[j] for i, j in pairwise(order)) == 0
    crowded = ["a"] * 5 + ["b"] * 2  # no valid order exists: still a permutation, repeats only of "a"
    order = order_without_repeats(crowded, rng)
    assert sorted(order) == list(range(7))
    assert all(crowded[i] == "a" for i, j in pairwise(order) if crowded[i] == crowded[j])
    orders = {tuple(order_without_repeats(labels, rng)) for _ in range(10)}
    assert len(orders) > 1  # random, not one fixed order


def test_build_soundscape_places_real_clips(real_clips) -> None:
    scape = build_soundscape(
        real_clips, np.random.default_rng(3), SR, gap_s=(1.0, 2.0), background_dbfs=-50.0
    )
    total_clip = sum(c[0].size for c in real_clips)
    assert scape.sample_rate == SR and scape.wave.dtype == np.float32
    assert (
        total_clip + SR + len(real_clips) * SR
        <= scape.wave.size
        <= total_clip + SR + len(real_clips) * 2 * SR
    )
    assert len(scape.events) == len(real_clips)
    by_source = {source: (wave, label) for wave, label, source in real_clips}
    previous_end = 0.0
    for e in scape.events:
        wave, label = by_source[e.source]
        assert e.label == label
        assert e.start_s >= previous_end + (1.0 if previous_end else 0.999)
        assert e.start_s <= e.onset_s < e.offset_s <= e.end_s
        a = round(e.start_s * SR)
        residual = scape.wave[a : a + wave.size] - wave
        assert 20 * np.log10(np.sqrt(np.mean(residual**2))) == pytest.approx(
            -50.0, abs=1.5
        )  # only background
        previous_end = e.end_s
    labels = [e.label for e in scape.events]
    assert all(x != y for x, y in pairwise(labels))
    again = build_soundscape(real_clips, np.random.default_rng(3), SR, gap_s=(1.0, 2.0))
    np.testing.assert_array_equal(again.wave, scape.wave)
    other = build_soundscape(real_clips, np.random.default_rng(4), SR, gap_s=(1.0, 2.0))
    assert [e.source for e in other.events] != [
        e.source for e in scape.events
    ] or other.wave.size != scape.wave.size
    truth = scape.truth_json()
    assert truth["duration_s"] == pytest.approx(scape.wave.size / SR) and len(truth["events"]) == len(
        real_clips
    )


def test_pick_clips_spreads_over_labels() -> None:
    items = [(Path(f"{label}{i}.wav"), label) for label in "abc" for i in range(4)]
    picked = pick_clips(items, 6, np.random.default_rng(0))
    assert len(picked) == len(set(picked)) == 6
    assert sorted(label for _, label in picked) == ["a", "a", "b", "b", "c", "c"]


EVENTS = [Event("dog", 1.0, 6.0, 1.5, 2.0, "d.wav"), Event("rain", 8.0, 13.0, 8.0, 13.0, "r.wav")]


def test_window_truth() -> None:
    assert window_truth(EVENTS, 0.0, 5.0) == "dog"  # the whole short bark is inside
    assert window_truth(EVENTS, 1.8, 6.8) is None  # 0.2 s of a 0.5 s bark: under half
    assert window_truth(EVENTS, 4.0, 9.0) is None  # 1 s of rain in a 5 s window
    assert window_truth(EVENTS, 5.0, 10.0) is None  # 2 s of rain in 5: under half
    assert window_truth(EVENTS, 6.0, 11.0) == "rain"  # 3 s of 5
    assert window_truth(EVENTS, 20.0, 25.0) is None


def _messages(hop: float, window: float, answer) -> list[dict]:
    msgs = [{"type": "status", "t_start": 0.0, "t_end": 0.0}]
    t = hop
    while t <= 15.0:
        start = max(0.0, t - window)
        msgs.append(
            {
                "type": "prediction",
                "t_start": start,
                "t_end": t,
                "labels": [{"label": answer(start, t), "score": 0.9}, {"label": "x", "score": 0.1}],
                "latency_ms": 20.0,
            }
        )
        t += hop
    return msgs


def test_oracle_scores_perfectly_and_latency_follows_the_hop() -> None:
    def oracle(a: float, b: float) -> str:
        return window_truth(EVENTS, a, b) or "silence"

    for hop in (0.5, 1.0):
        preds = predictions_from_messages(_messages(hop, 5.0, oracle))
        report = score_stream(preds, EVENTS)
        assert report["window_accuracy"] == 1.0
        assert report["detected_events"] == 2
        # dog: the first window holding half the bark ends at onset + 0.25 s, rounded up to the hop grid
        first_dog = min(p.t_end for p in preds if p.label == "dog")
        assert report["onset_latencies_s"][0] == pytest.approx(first_dog + 0.02 - 1.5)
        assert report["onset_latencies_s"][0] <= 0.25 + hop + 0.02
        first_rain = min(p.t_end for p in preds if p.label == "rain")
        assert report["onset_latencies_s"][1] == pytest.approx(first_rain + 0.02 - 8.0)
        # in stream time alone: the same without the messages' 20 ms of processing
        assert report["onset_delays_s"] == pytest.approx([x - 0.02 for x in report["onset_latencies_s"]])
        assert report["onset_delay_median_s"] == pytest.approx(report["onset_latency_median_s"] - 0.02)


def test_wrong_model_scores_zero_and_detects_nothing() -> None:
    preds = predictions_from_messages(_messages(1.0, 5.0, lambda a, b: "siren"))
    report = score_stream(preds, EVENTS)
    assert report["window_accuracy"] == 0.0
    assert report["detection_rate"] == 0.0 and report["onset_latency_median_s"] is None
    assert report["windows"] == report["scored_windows"] + report["background_windows"]


def test_late_detections_beyond_the_limit_do_not_count() -> None:
    late = [WindowPrediction(9.0, 14.0, "dog", 0.9)]  # after the bark's offset + 5 s? 14 > 2 + 5
    assert score_stream(late, EVENTS)["onset_latencies_s"][0] is None
    near = [WindowPrediction(0.0, 2.0, "dog", 0.9)]
    assert score_stream(near, EVENTS)["onset_latencies_s"][0] == pytest.approx(0.5)


def test_pooled_reports_equal_one_report_over_both() -> None:
    def oracle(a: float, b: float) -> str:
        return window_truth(EVENTS, a, b) or "silence"

    good = score_stream(predictions_from_messages(_messages(1.0, 5.0, oracle)), EVENTS)
    bad = score_stream(predictions_from_messages(_messages(1.0, 5.0, lambda a, b: "dog")), EVENTS)
    pooled = pool_reports([good, bad])
    assert pooled["scored_windows"] == good["scored_windows"] + bad["scored_windows"]
    correct = good["scored_windows"] + round(bad["window_accuracy"] * bad["scored_windows"])
    assert pooled["window_accuracy"] == pytest.approx(correct / pooled["scored_windows"])
    assert pooled["events"] == 4 and pooled["detected_events"] == 3  # "dog" everywhere finds the dog only
    assert pooled["onset_latencies_s"] == good["onset_latencies_s"] + bad["onset_latencies_s"]
    delays = [x for x in good["onset_delays_s"] + bad["onset_delays_s"] if x is not None]
    assert pooled["onset_delay_median_s"] == pytest.approx(float(np.median(delays)))
    table = stream_table_markdown([{"hop_s": 1.0, **pooled}])
    assert table.splitlines()[0].endswith("| onset delay median s (stream time) |")
    assert table.splitlines()[-1].endswith(f"| {pooled['onset_delay_median_s']:.2f} |")
