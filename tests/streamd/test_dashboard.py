"""Dashboard state and pure render functions, rendered into string consoles; the live wrapper never blocks."""

from __future__ import annotations

import contextlib
import io
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from rich.console import Console
from zmq_helpers import SHARED, esc50_categories

from streamd import messages
from streamd.dashboard import (
    PALETTE,
    DashboardState,
    _counters_line,
    bar,
    label_color,
    render_dashboard,
    stream_summary,
)
from streamd.dashboard_live import Dashboard

WALL = 1_700_000_000.0


def _text(renderable, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    console.print(renderable)
    return console.file.getvalue()


def _real_level_dbfs() -> float:
    """RMS level of a real ESC-50 clip (dog), as the pipeline would report it."""
    path = SHARED / "data" / "esc50" / "audio" / "1-100032-A-0.flac"
    if not path.exists():
        pytest.skip(f"ESC-50 audio not found at {path}")
    audio, _ = sf.read(path, dtype="float32")
    return float(20 * np.log10(np.sqrt(np.mean(audio**2))))


def _prediction(i: int, scores: dict[str, float], **kwargs) -> dict:
    return messages.prediction(
        "mic", i, i + 5.0, "ast-esc50", list(scores.items()), 12.3, wall_time=WALL, **kwargs
    )


def test_bar_fills_in_eighths_and_clamps() -> None:
    assert bar(0.5, 4) == "██  "
    assert bar(1 / 16, 2) == "▏ "
    assert bar(0.99, 1) == "█"
    assert bar(2.0, 3) == "███" and bar(-1.0, 3) == "   "
    rng = np.random.default_rng(0)
    for fraction, width in zip(rng.random(200), rng.integers(1, 60, 200), strict=True):
        text = bar(float(fraction), int(width))
        filled = text.count("█") + sum(1 for ch in text if ch in "▏▎▍▌▋▊▉") * 0.5
        assert len(text) == width
        assert abs(filled - fraction * width) <= 1.0


def test_label_colours_are_stable_and_varied() -> None:
    labels = esc50_categories()
    colours = [label_color(name) for name in labels]
    assert colours == [label_color(name) for name in labels]
    assert set(colours) <= set(PALETTE) and len(set(colours)) >= len(PALETTE) - 2


def test_state_keeps_top_k_timeline_level_counters_and_events() -> None:
    labels = esc50_categories()
    state = DashboardState(top_k=3, timeline_len=5)
    for i in range(8):
        top = labels[i % 4]
        state.update(
            _prediction(i, {top: 0.9, labels[10]: 0.5, labels[11]: 0.3, labels[12]: 0.1}, level_dbfs=-20 - i)
        )
    view = state.streams["mic"]
    assert view.labels == [(labels[7 % 4], 0.9), (labels[10], 0.5), (labels[11], 0.3)]
    assert [(t0, top) for t0, _, top, _ in view.timeline] == [(float(i), labels[i % 4]) for i in range(3, 8)]
    assert (view.level_dbfs, view.latency_ms, view.predictions, view.t_end) == (-27.0, 12.3, 8, 12.0)
    counters = messages.empty_counters() | {"windows": 8, "rtf": 31.5, "dropped_windows": 3}
    state.update(messages.status("mic", 0, 12, counters, "overloaded", message="queue full", wall_time=WALL))
    assert view.state == "overloaded" and view.counters["dropped_windows"] == 3
    state.update(messages.event("mic", labels[0], "start", 2, 7, 0.95, wall_time=WALL))
    state.update(messages.event("mic", labels[1], "start", 3, 8, 0.85, wall_time=WALL))
    state.update(messages.event("mic", labels[1], "end", 3, 9, 0.87, wall_time=WALL))
    assert view.active_events == {labels[0]: (2.0, 0.95)}
    state.update({"type": "unknown"})
    assert state.messages == 12


def test_render_shows_everything_the_issue_asks_for() -> None:
    level = _real_level_dbfs()
    state = DashboardState(top_k=3)
    for i in range(10):
        state.update(_prediction(i, {"dog": 0.91, "rain": 0.40, "crickets": 0.12}, level_dbfs=level))
    state.update(_prediction(10, {"rooster": 0.77, "dog": 0.2}, level_dbfs=level))
    counters = messages.empty_counters() | {"windows": 11, "rtf": 31.5, "dropped_windows": 3, "overruns": 1}
    state.update(messages.status("mic", 0, 15, counters, "running", wall_time=WALL))
    state.update(messages.event("mic", "dog", "start", 0, 6, 0.91, wall_time=WALL))
    text = _text(render_dashboard(state, width=80, timeline_rows=4), 80)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert "mic" in lines[0] and "ast-esc50" in lines[0] and "running" in lines[0]
    score_lines = {name: next(line for line in lines if f" {name} " in line) for name in ("rooster", "dog")}
    assert score_lines["rooster"].rstrip(" │").endswith("0.77")
    assert score_lines["dog"].rstrip(" │").endswith("0.20")
    assert score_lines["rooster"].count("█") > 3 * score_lines["dog"].count("█") > 0
    assert f"{level:6.1f} dBFS" in text
    assert "latency 12.3 ms · real-time factor 31.50x" in text
    assert "windows 11 · dropped 3 · overruns 1 · late 0" in text
    assert "events: ● dog since 0.0 s (peak 0.91)" in text
    timeline = [line for line in lines if " s  " in line and "–" in line]
    assert [line.split("s  ")[1].split()[0] for line in timeline] == ["dog", "dog", "dog", "rooster"]
    assert "7.0–12.0 s" in timeline[0] and "10.0–15.0 s" in timeline[-1]  # older windows scrolled off
    assert "timeline ddddddddddr" in text


def test_render_before_anything_and_for_two_streams() -> None:
    state = DashboardState()
    assert "waiting for messages" in _text(render_dashboard(state, width=60), 60)
    state.update(_prediction(0, {"dog": 0.5}))
    state.update(messages.prediction("door", 0, 5, "cnn", [("knock", 0.8)], 3.0, wall_time=WALL))
    text = _text(render_dashboard(state, width=60), 60)
    assert text.index("─ mic") < text.index("─ door")
    assert "no status yet" in text and "real-time factor n/a" in text and "level   n/a" in text
    for width in (40, 60, 120):
        assert all(
            len(line) <= width for line in _text(render_dashboard(state, width=width), width).splitlines()
        )


def test_live_dashboard_sink_never_blocks_and_renders_the_latest() -> None:
    console = Console(file=io.StringIO(), width=80, color_system=None, force_terminal=False)
    dashboard = Dashboard(console=console, refresh_hz=20, max_pending=1000)
    dashboard.start()

    def produce() -> None:
        for i in range(20000):
            dashboard.sink(_prediction(i, {"siren": 0.9 if i == 19999 else 0.1, "dog": 0.5}))

    producer = threading.Thread(target=produce)
    with dashboard._render_lock:  # a render that never ends: the sink must not wait for it
        producer.start()
        producer.join(30.0)
        assert not producer.is_alive()
    assert len(dashboard._pending) == 1000  # the oldest went, the newest kept
    dashboard.stop()
    view = dashboard.state.streams["mic"]
    assert view.labels[0] == ("siren", 0.9) and view.t_end == 20004.0
    assert "siren" in console.file.getvalue()


def test_missed_counts_the_gaps_in_each_streams_seq() -> None:
    """Messages lost on the way (seq jumps) show as "missed", per stream; a restarted daemon is no gap."""
    state = DashboardState()
    counters = messages.empty_counters() | {"windows": 9}
    sent = [messages.with_seq(_prediction(i, {"dog": 0.9}), i) for i in range(10)]
    for msg in sent[3:5] + sent[8:]:  # joined at seq 3; seq 5, 6 and 7 never arrived
        state.update(msg)
    other = messages.status("yard", 0, 5, counters, "running", wall_time=WALL)
    for seq in (0, 1, 2):
        state.update(messages.with_seq(other, seq))
    state.update(messages.with_seq(messages.status("mic", 0, 9, counters, "running", wall_time=WALL), 0))
    assert state.view("mic").missed == 3 and state.view("yard").missed == 0
    text = _text(render_dashboard(state, width=100), 100)
    assert "late 0 · model errors 0 · publish dropped 0 · missed 3" in text


def test_a_stream_two_publishers_share_shows_no_loss_count() -> None:
    """seq 0, 100, 1, 101: two publishers of one name (the second's first message looks like a gap of 99
    before the name can be told shared): the dashboard then counts no loss for it, and says why."""
    state = DashboardState()
    counters = messages.empty_counters() | {"windows": 9}
    for seq in (0, 100, 1, 101):
        state.update(messages.with_seq(_prediction(seq % 100, {"dog": 0.9}), seq))
    state.update(messages.status("mic", 0, 9, counters, "running", wall_time=WALL))  # no seq: not counted
    assert state.view("mic").missed is None
    line = _counters_line(state.view("mic")).plain
    assert line.endswith("missed n/a (name shared)") and "missed 99" not in line, line
    assert stream_summary(state.view("mic"))[3] == 0  # no loss counted for it in the compact view


def _streams(names: list[str], state: str = "running") -> DashboardState:
    out = DashboardState(top_k=5)
    for name in names:
        out.update(messages.prediction(name, 0.0, 5.0, "m", [("dog", 0.9)], 1.0, wall_time=WALL))
        counters = {**dict.fromkeys(messages.STATUS_COUNTERS, 0), "windows": 1, "rtf": 2.0}
        out.update(messages.status(name, 0.0, 5.0, counters, state, wall_time=WALL))
    return out


def test_streams_that_do_not_fit_the_terminal_get_one_line_each() -> None:
    names = [f"stream{i}" for i in range(6)]
    state = _streams(names, "stalled")
    text = _text(render_dashboard(state, width=100, height=29), 100)
    assert len(text.splitlines()) <= 29
    for name in names:  # every stream and its state in view
        assert any(name in line and "stalled" in line for line in text.splitlines())
    few = _text(render_dashboard(_streams(names[:1]), width=100, height=29), 100)
    assert "timeline" not in few or len(few.splitlines()) <= 29  # one stream: its panel, timeline cut first


def test_a_long_stream_name_leaves_the_state_in_view() -> None:
    text = _text(render_dashboard(_streams(["x" * 64], "device_error"), width=60), 60)
    assert "device_error" in text.splitlines()[0] and "…" in text.splitlines()[0]
    state = _streams(["garden"], "device_error")
    state.streams["garden"].model = "my_finetuned_birds_model_v2_final.safetensors"
    title = _text(render_dashboard(state, width=60), 60).splitlines()[0]
    assert "garden" in title and "device_error" in title


def test_log_records_print_above_the_live_display_not_over_it(monkeypatch) -> None:
    import logging

    import streamd.dashboard_live

    monkeypatch.setattr(streamd.dashboard_live, "is_terminal", lambda stream: True)  # stderr: the terminal
    console = Console(file=io.StringIO(), width=80, color_system=None, force_terminal=True)
    dashboard = Dashboard(console=console, refresh_hz=20)
    dashboard.start()
    logging.getLogger("streamd.native_stderr").warning("portaudio: Expression 'x' failed")
    dashboard.stop()
    assert "portaudio: Expression 'x' failed" in console.file.getvalue()
    assert all("ConsoleLogHandler" not in type(h).__name__ for h in logging.getLogger().handlers)


def test_a_terminal_that_fails_stops_the_dashboard_output_not_the_run(monkeypatch) -> None:
    import sys

    full = open("/dev/full", "w")  # noqa: SIM115 - closed below
    monkeypatch.setattr(sys, "stdout", full)
    dashboard = Dashboard(refresh_hz=20)
    try:
        dashboard.start()
        dashboard.sink(_prediction(0, {"dog": 0.9}))
        time.sleep(0.2)
        dashboard.stop()  # no exception: the failure is kept for the command to report
    finally:
        monkeypatch.undo()
        with contextlib.suppress(OSError):
            full.close()
    assert dashboard.failure == "No space left on device"


def test_names_differing_at_their_end_stay_apart_and_states_are_never_cut() -> None:
    """Two microphones of one array, named alike up to their last part, showed as one name twice, and a
    narrow compact table cut their state to ``runn…``."""
    from streamd.dashboard import fit, render_compact

    assert fit("kitchen-microphone-array-left", 16) != fit("kitchen-microphone-array-right", 16)
    assert len(fit("kitchen-microphone-array-left", 16)) == 16
    names = ["kitchen-microphone-array-left-pulse", "kitchen-microphone-array-left-default"]
    lines = _text(render_compact(_streams(names, "device_error"), 60), 60).splitlines()
    rows = [line for line in lines if "device_error" in line]
    assert len(rows) == 2 and "pulse" in rows[0] and "default" in rows[1]


def test_outages_are_shown_among_the_counters() -> None:
    state = _streams(["mic"])
    counters = {**messages.empty_counters(), "outages": 2, "outage_s": 7.3}
    state.update(messages.status("mic", 0.0, 20.0, counters, "running"))
    assert "outages 2" in _text(render_dashboard(state, width=100), 100)


def test_a_terminal_that_cannot_redraw_gets_changed_plain_lines_as_they_come() -> None:
    console = Console(file=io.StringIO(), width=80, force_terminal=True, _environ={"TERM": "dumb"})
    assert console.is_dumb_terminal  # rich's Live would draw nothing here until it stopped
    dashboard = Dashboard(console=console, refresh_hz=20)
    dashboard.start()
    try:
        setup = "44100 Hz x1 -> 16000 Hz mono; model default on cpu (bf16)"
        dashboard.sink(
            messages.status(
                "mic", 0.0, 0.0, messages.empty_counters(), "starting", message=setup, wall_time=WALL
            )
        )
        dashboard.sink(_prediction(0, {"dog": 0.9, "siren": 0.1}))
        deadline = time.monotonic() + 10.0
        while "dog 0.90" not in console.file.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        shown = console.file.getvalue()  # printed while running, not only at the end
        dashboard.sink(_prediction(0, {"dog": 0.9, "siren": 0.1}))  # the same line again: not reprinted
    finally:
        dashboard.stop()
    assert f"mic: {setup}" in shown and "mic starting · t=5.0 s · dog 0.90" in shown
    assert "\x1b" not in console.file.getvalue()  # no colours, no cursor movement
    assert console.file.getvalue().count("dog 0.90") == 1
