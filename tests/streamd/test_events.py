"""Event detection: exact outcomes on hand-made score sequences; streaming equals the offline reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from zmq_helpers import esc50_categories, validate

from streamd.errors import ConfigError
from streamd.events import EventConfig, EventDetector, find_events, sparse_hits_warning

WALL = 1_700_000_000.0


def _windows(series: dict[str, list[float]], hop_s: float = 1.0, window_s: float = 5.0) -> list:
    n = len(next(iter(series.values())))
    return [(i * hop_s, i * hop_s + window_s, {k: v[i] for k, v in series.items()}) for i in range(n)]


def _stream(cfg: EventConfig, windows: list, stream: str = "mic") -> list[tuple[int, dict]]:
    """(window index, message) for everything a detector emits; flush counts as index len(windows)."""
    detector = EventDetector(cfg, stream)
    out = []
    for i, (t0, t1, scores) in enumerate(windows):
        out += [(i, m) for m in detector.update(t0, t1, scores, wall_time=WALL)]
    return out + [(len(windows), m) for m in detector.flush(windows[-1][1], wall_time=WALL)]


def _brief(msg: dict) -> tuple:
    return (msg["label"], msg["state"], msg["t_start"], msg["t_end"], msg["peak_score"])


def test_min_hits_and_hold_exact_outcome() -> None:
    dog = [0.2, 0.6, 0.7, 0.3, 0.8, 0.1, 0.1, 0.1, 0.1]
    got = _stream(EventConfig(threshold=0.5, min_hits=2, hold_s=2.0), _windows({"dog": dog}))
    # Hits at windows 1, 2 (start at 2), 4 (the miss at 3 is within hold); window 6 ends 2 s after window 4.
    assert [(i, _brief(m)) for i, m in got] == [
        (2, ("dog", "start", 1.0, 7.0, 0.7)),
        (6, ("dog", "end", 1.0, 9.0, 0.8)),
    ]
    for _, msg in got:
        validate(msg)
        assert msg["stream"] == "mic" and msg["wall_time"] == WALL


def test_isolated_hits_need_min_hits() -> None:
    rain = [0.9, 0.1, 0.9, 0.1, 0.9, 0.1]
    windows = _windows({"rain": rain})
    assert _stream(EventConfig(min_hits=2, hold_s=0.0), windows) == []
    got = [(i, _brief(m)) for i, m in _stream(EventConfig(min_hits=1, hold_s=0.0), windows)]
    assert got == [
        (0, ("rain", "start", 0.0, 5.0, 0.9)),
        (1, ("rain", "end", 0.0, 5.0, 0.9)),
        (2, ("rain", "start", 2.0, 7.0, 0.9)),
        (3, ("rain", "end", 2.0, 7.0, 0.9)),
        (4, ("rain", "start", 4.0, 9.0, 0.9)),
        (5, ("rain", "end", 4.0, 9.0, 0.9)),
    ]


def test_per_label_thresholds_allow_and_deny() -> None:
    series = {"dog": [0.45, 0.45, 0.45], "rain": [0.6, 0.6, 0.6], "wind": [0.9, 0.9, 0.9]}
    windows = _windows(series)
    cfg = EventConfig(threshold=0.5, thresholds={"dog": 0.4, "rain": 0.7}, min_hits=2, hold_s=1.0)
    assert [(_brief(m)[:2]) for _, m in _stream(cfg, windows)] == [
        ("dog", "start"),
        ("wind", "start"),
        ("dog", "end"),
        ("wind", "end"),
    ]
    cfg.deny = ["wind"]
    assert {m["label"] for _, m in _stream(cfg, windows)} == {"dog"}
    cfg.deny, cfg.allow = [], ["wind", "siren"]
    assert {m["label"] for _, m in _stream(cfg, windows)} == {"wind"}


def test_flush_ends_open_events_and_drops_pending_runs() -> None:
    detector = EventDetector(EventConfig(min_hits=2, hold_s=5.0), "file")
    assert detector.update(0, 5, {"dog": 0.9, "cat": 0.1}, wall_time=WALL) == []
    started = detector.update(1, 6, {"dog": 0.95, "cat": 0.8}, wall_time=WALL)
    assert [_brief(m) for m in started] == [("dog", "start", 0.0, 6.0, 0.95)]
    assert detector.update(2, 7, {"dog": 0.2, "cat": 0.1}, wall_time=WALL) == []  # dog held, cat reset
    assert detector.update(3, 8, {"cat": 0.9}, wall_time=WALL) == []  # cat pending (1 hit)
    ended = detector.flush(8.0, wall_time=WALL)
    assert [_brief(m) for m in ended] == [("dog", "end", 0.0, 6.0, 0.95)]
    assert detector.tracks == {} and detector.flush(9.0) == []


def _random_windows(seed: int, labels: list[str], n: int, hop_s: float) -> list:
    """Smoothed random scores; each window keeps only its top 4 labels, as a top-k engine would."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n + 4, len(labels)))
    kernel = np.ones(5) / 5
    smooth = np.stack([np.convolve(raw[:, j], kernel, mode="valid") for j in range(len(labels))], axis=1)
    scores = 1 / (1 + np.exp(-2.5 * smooth))
    windows = []
    for i in range(n):
        best = np.argsort(-scores[i])[:4]
        windows.append((i * hop_s, i * hop_s + 5.0, {labels[j]: float(scores[i, j]) for j in best}))
    return windows


CONFIGS = [
    EventConfig(),
    EventConfig(threshold=0.6, min_hits=1, hold_s=0.0),
    EventConfig(threshold=0.55, min_hits=3, hold_s=3.0),
    EventConfig(threshold=0.5, thresholds={"dog": 0.7, "rain": 0.4}, min_hits=2, hold_s=1.5),
    EventConfig(threshold=0.5, allow=["dog", "rain", "crickets"], min_hits=2, hold_s=2.0),
    EventConfig(threshold=0.5, deny=["dog"], min_hits=2, hold_s=0.5),
]


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize(("seed", "hop_s"), [(0, 1.0), (1, 0.5), (2, 0.32)])
def test_streaming_equals_offline_reference(cfg: EventConfig, seed: int, hop_s: float) -> None:
    labels = esc50_categories()[:8]
    windows = _random_windows(seed, labels, 300, hop_s)
    streamed = [m for _, m in _stream(cfg, windows)]
    assert streamed == find_events(cfg, "mic", windows, wall_time=WALL)
    assert sum(m["state"] == "start" for m in streamed) == sum(m["state"] == "end" for m in streamed)
    assert len(streamed) >= 4  # the sequences are long enough to exercise starts, holds and ends
    for msg in streamed:
        validate(msg)
        assert cfg.watches(msg["label"]) and msg["t_start"] <= msg["t_end"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_hits": 0}, "min_hits"),
        ({"min_hits": 1.5}, "min_hits"),
        ({"hold_s": -1.0}, "hold_s"),
        ({"threshold": math.nan}, "threshold"),
        ({"threshold": "high"}, "threshold"),
        ({"thresholds": {"dog": None}}, "thresholds.dog"),
        ({"allow": ["dog", ""]}, "allow"),
    ],
)
def test_bad_event_config_is_a_config_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        EventConfig(**kwargs)


def test_hits_a_hop_or_more_apart_are_warned_about() -> None:
    """At --hop 5 the ten 5-s sounds of examples/long.wav raised two events though their windows scored
    high: two hits in a row span 10 s there. Said where the hits needed span half a window more or beyond."""
    default = EventConfig()
    assert sparse_hits_warning(default, 1.0, 5.0) is None and sparse_hits_warning(default, 2.0, 5.0) is None
    said = sparse_hits_warning(default, 5.0, 5.0)
    assert said is not None and "needs 2 windows in a row" in said and "span 10 s of audio" in said
    assert "span 7.5 s" in (sparse_hits_warning(default, 2.5, 5.0) or "")
    assert sparse_hits_warning(EventConfig(min_hits=1), 5.0, 5.0) is None  # one hit opens an event
    assert "span 4 s" in (sparse_hits_warning(EventConfig(min_hits=4), 1.0, 1.0) or "")


def test_replay_says_so_at_a_wide_hop(esc50, capsys) -> None:
    from support.fixtures import free_tcp_port

    from streamd.cli import main

    clip = str(esc50.clips(1)[0])
    base = [
        "replay",
        clip,
        "--speed",
        "max",
        "--no-dashboard",
        "--publish",
        f"tcp://127.0.0.1:{free_tcp_port()}",
    ]
    assert main([*base, "--hop", "2.5"]) == 0
    assert (
        "an event needs 2 windows in a row at or above its threshold: at hop 2.5 s" in capsys.readouterr().err
    )
    assert main([*base, "--hop", "1"]) == 0
    assert "an event needs" not in capsys.readouterr().err
