"""Terminal dashboard: what each stream hears right now, and how the daemon keeps up.

``DashboardState.update(msg)`` folds published messages into a per-stream view; ``render_dashboard`` is a
pure function of that state (tested by rendering into a string console): a panel per stream, or one line
per stream when the panels do not fit the terminal. ``streamd.dashboard_live`` shows it live.
"""

from __future__ import annotations

import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from streamd.sequence import GapCounter
from streamd.timeline_legend import legend, timeline_symbols

LEVEL_RANGE_DBFS = (-60.0, 0.0)
PALETTE = (
    "green",
    "cyan",
    "magenta",
    "yellow",
    "blue",
    "red",
    "bright_green",
    "bright_cyan",
    "bright_magenta",
)
TROUBLE_STATES = ("device_error", "stalled", "overloaded")
_EIGHTHS = " ▏▎▍▌▋▊▉█"
DROP_COUNTERS = ("dropped_windows", "overruns", "publish_dropped")
COUNTERS_SHOWN = (
    ("windows", "windows"),
    ("dropped_windows", "dropped"),
    ("overruns", "overruns"),
    ("late_results", "late"),
    ("model_errors", "model errors"),
    ("publish_dropped", "publish dropped"),
    ("outages", "outages"),  # a device or network input away: the stream clock skipped it
)


def bar(fraction: float, width: int) -> str:
    """A bar of ``width`` cells filled to ``fraction`` (clamped to [0, 1]) in eighths of a cell."""
    width = max(0, width)
    eighths = round(min(1.0, max(0.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (_EIGHTHS[part] if part else "")
    return text.ljust(width)


def label_color(label: str) -> str:
    """A stable colour per label (the same in every run)."""
    return PALETTE[zlib.crc32(label.encode("utf-8")) % len(PALETTE)]


@dataclass
class StreamView:
    """Everything the dashboard shows about one stream."""

    name: str
    timeline_len: int
    model: str = ""
    labels: list[tuple[str, float]] = field(default_factory=list)
    t_end: float = 0.0
    level_dbfs: float | None = None
    latency_ms: float | None = None
    predictions: int = 0
    state: str | None = None
    status_message: str | None = None
    setup: str | None = None  # the "starting" status message: model, device, precision, windows
    counters: dict[str, float] = field(default_factory=dict)
    missed: int | None = 0  # messages this dashboard never received (gaps in seq); None: name shared
    active_events: dict[str, tuple[float, float]] = field(default_factory=dict)  # label -> (t_start, peak)
    timeline: deque[tuple[float, float, str, float]] = field(init=False)  # (t_start, t_end, label, score)

    def __post_init__(self) -> None:
        self.timeline = deque(maxlen=self.timeline_len)


class DashboardState:
    """Per-stream views built from prediction, event and status messages."""

    def __init__(self, top_k: int = 5, timeline_len: int = 60) -> None:
        self.top_k = top_k
        self.timeline_len = timeline_len
        self.streams: dict[str, StreamView] = {}
        self.messages = 0
        self.gaps = GapCounter()

    def view(self, stream: str) -> StreamView:
        if stream not in self.streams:
            self.streams[stream] = StreamView(stream, self.timeline_len)
        return self.streams[stream]

    def update(self, msg: dict[str, Any]) -> None:
        """Fold one message in; unknown types are ignored."""
        kind = msg.get("type")
        if kind not in ("prediction", "event", "status"):
            return
        self.messages += 1
        view = self.view(str(msg.get("stream", "?")))
        self.gaps.observe(msg)
        view.missed = self.gaps.missed_in(view.name)  # None once two publishers are found to share it
        view.t_end = max(view.t_end, float(msg.get("t_end", 0.0)))
        if kind == "prediction":
            self._prediction(view, msg)
        elif kind == "event":
            self._event(view, msg)
        else:
            view.state = msg.get("state")
            view.status_message = msg.get("message")
            if view.state == "starting":
                view.setup = view.status_message
            view.counters = dict(msg.get("counters", {}))

    def _prediction(self, view: StreamView, msg: dict[str, Any]) -> None:
        view.model = msg.get("model", view.model)
        view.labels = [(item["label"], float(item["score"])) for item in msg.get("labels", [])][: self.top_k]
        view.latency_ms = msg.get("latency_ms", view.latency_ms)
        view.level_dbfs = msg.get("level_dbfs", view.level_dbfs)
        view.predictions += 1
        if view.labels:
            label, score = view.labels[0]
            view.timeline.append((float(msg["t_start"]), float(msg["t_end"]), label, score))

    @staticmethod
    def _event(view: StreamView, msg: dict[str, Any]) -> None:
        if msg.get("state") == "start":
            view.active_events[msg["label"]] = (float(msg["t_start"]), float(msg["peak_score"]))
        else:
            view.active_events.pop(msg["label"], None)


def _scores_table(view: StreamView, width: int) -> Table:
    table = Table.grid(padding=(0, 1))
    label_width = max([len(name) for name, _ in view.labels] + [5])
    bar_width = max(5, width - label_width - 7)
    for name, score in view.labels:
        table.add_row(
            Text(name.ljust(label_width), style=label_color(name)),
            Text(bar(score, bar_width), style=label_color(name)),
            Text(f"{score:5.2f}"),
        )
    if not view.labels:
        table.add_row(Text("no predictions yet", style="dim"))
    return table


def _level_line(view: StreamView, width: int) -> Text:
    low, high = LEVEL_RANGE_DBFS
    text = Text("level ")
    if view.level_dbfs is None:
        return text.append("  n/a", style="dim")
    fraction = (view.level_dbfs - low) / (high - low)
    style = "red" if view.level_dbfs > -1.0 else "green"
    text.append(bar(fraction, max(5, width - 18)), style=style)
    return text.append(f" {view.level_dbfs:6.1f} dBFS")


def _speed_line(view: StreamView) -> Text:
    latency = "n/a" if view.latency_ms is None else f"{view.latency_ms:.1f} ms"
    rtf = view.counters.get("rtf")
    return Text(f"latency {latency} · real-time factor {'n/a' if rtf is None else f'{rtf:.2f}x'}")


def _counters_line(view: StreamView) -> Text:
    parts = [f"{name} {int(view.counters[key])}" for key, name in COUNTERS_SHOWN if key in view.counters]
    if parts:
        # messages lost on the way to this dashboard (uncountable when two publishers share the name)
        parts.append("missed n/a (name shared)" if view.missed is None else f"missed {view.missed}")
    text = Text(" · ".join(parts) if parts else "no status yet", style="" if parts else "dim")
    if view.missed or any(int(view.counters.get(key, 0)) for key in DROP_COUNTERS):
        text.stylize("yellow")
    return text


def _timeline(view: StreamView, width: int, rows: int) -> Group:
    recent = list(view.timeline)
    strip = Text("timeline ")
    shown = recent[-max(1, width - 10) :]
    symbols = timeline_symbols(label for _, _, label, _ in shown)
    for _, _, label, _ in shown:
        strip.append(symbols[label], style=f"reverse {label_color(label)}")
    lines: list[RenderableType] = [strip]
    if symbols:
        lines.append(Text(f"legend   {legend(symbols)}", style="dim", overflow="fold"))
    for t_start, t_end, label, score in recent[-rows:]:
        line = Text(f"{t_start:9.1f}–{t_end:.1f} s  ")
        line.append(label, style=label_color(label))
        line.append(f" {score:.2f}")
        lines.append(line)
    return Group(*lines)


def _events_line(view: StreamView) -> Text:
    if not view.active_events:
        return Text("events: none active", style="dim")
    text = Text("events: ")
    for i, (label, (t_start, peak)) in enumerate(sorted(view.active_events.items())):
        if i:
            text.append("  ")
        text.append(f"● {label}", style=label_color(label))
        text.append(f" since {t_start:.1f} s (peak {peak:.2f})")
    return text


def render_stream(view: StreamView, width: int = 100, timeline_rows: int = 6) -> Panel:
    """One stream's panel: top-k scores, level, latency, rtf, counters, events and the timeline."""
    inner = max(20, width - 4)
    rest = f"  {fit(view.model or '?', width // 4)}  t={view.t_end:.1f} s"
    state = f"  {view.state}" if view.state else ""
    title = Text(fit(view.name, width - 6 - len(rest) - len(state)), style="bold").append(rest)
    if view.state:
        title.append(state, style="red" if view.state in TROUBLE_STATES else "green")
    body: list[RenderableType] = [
        _scores_table(view, inner),
        _level_line(view, inner),
        _speed_line(view),
        _counters_line(view),
        _events_line(view),
        _timeline(view, inner, timeline_rows),
    ]
    if view.status_message and view.status_message != view.setup:
        body.insert(4, Text(view.status_message, style="yellow"))
    if view.setup:
        body.append(Text(view.setup, style="dim"))
    return Panel(Group(*body), title=title, title_align="left", width=width)


def fit(text: str, room: int) -> str:
    """``text`` cut to ``room`` characters (at least 8), an ellipsis marking the cut in the middle: names
    that differ only at their end (``...-left``, ``...-right``) stay apart."""
    room = max(8, room)
    if len(text) <= room:
        return text
    tail = (room - 1) // 2
    return text[: room - 1 - tail] + "…" + text[len(text) - tail :]


def panel_rows(state: DashboardState, timeline_rows: int) -> int:
    """About how many terminal rows one stream's panel takes (borders, scores, lines, timeline)."""
    return 2 + max(1, state.top_k) + 7 + timeline_rows


def stream_summary(view: StreamView) -> tuple[str | None, float | None, float | None, int]:
    """A stream's top label and its score, real-time factor, and losses (dropped or missed messages)."""
    label, score = view.labels[0] if view.labels else (None, None)
    dropped = sum(int(view.counters.get(key, 0)) for key in DROP_COUNTERS) + (view.missed or 0)
    return label, score, view.counters.get("rtf"), dropped


def render_compact(state: DashboardState, width: int = 100) -> Table:
    """One line per stream (when the panels do not fit the terminal): state, time, top label, speed."""
    table = Table(box=None, padding=(0, 1), width=width, title="streamd", title_justify="left")
    # the state is never cut (what is wrong); a stream's name, cut in the middle, gets the room it was cut to
    names = [len(fit(view.name, width // 4)) for view in state.streams.values()]
    widths = {"stream": min(max(names, default=8), width // 4), "state": 12}
    for name in ("stream", "state", "t s", "top label", "score", "rtf", "dropped", "events"):
        table.add_column(name, no_wrap=True, overflow="ellipsis", min_width=widths.get(name))
    for view in state.streams.values():
        label, score, rtf, dropped = stream_summary(view)
        table.add_row(
            Text(fit(view.name, width // 4), style="bold"),
            Text(view.state or "–", style="red" if view.state in TROUBLE_STATES else "green"),
            f"{view.t_end:.1f}",
            Text(label, style=label_color(label)) if label is not None else Text("–", style="dim"),
            "" if score is None else f"{score:.2f}",
            "" if rtf is None else f"{rtf:.1f}x",
            Text(str(dropped), style="yellow" if dropped else ""),
            ", ".join(sorted(view.active_events)),
        )
    return table


def render_dashboard(
    state: DashboardState, width: int = 100, timeline_rows: int = 6, height: int | None = None
) -> RenderableType:
    """The whole dashboard: one panel per stream, in the order streams appeared; when those would not fit
    ``height`` rows, panels without their timelines, and if even those do not fit, one line per stream
    (``render_compact``), so that every stream's state stays in view."""
    if not state.streams:
        return Panel(Text("waiting for messages…", style="dim"), title="streamd", width=width)
    n = len(state.streams)
    if height is not None and n * panel_rows(state, timeline_rows) > height:
        if n == 1 or n * panel_rows(state, 0) <= height:
            timeline_rows = 0
        else:
            return render_compact(state, width)
    return Group(*(render_stream(view, width, timeline_rows) for view in state.streams.values()))
