"""The dashboard on a terminal that cannot redraw (``TERM=dumb``: an editor's shell, a serial console).

``rich.live.Live`` draws nothing on such a terminal until it stops; ``PlainLines`` prints instead one
plain line per stream whenever what it shows has changed, at most once per period: its state, stream
time, top label and score, real-time factor, losses and open events (the compact table's columns), and
once its set-up (model, precision, windows).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from streamd.dashboard import DashboardState, StreamView, stream_summary


def plain_line(view: StreamView) -> str:
    """One stream as one line of plain text (no colours, no cursor movement)."""
    label, score, rtf, dropped = stream_summary(view)
    parts = [f"{view.name} {view.state or 'waiting'}", f"t={view.t_end:.1f} s"]
    if label is not None:
        parts.append(f"{label} {score:.2f}")
    if rtf is not None:
        parts.append(f"rtf {rtf:.1f}x")
    if dropped:
        parts.append(f"dropped {dropped}")
    if view.active_events:
        parts.append("events " + ", ".join(sorted(view.active_events)))
    if view.status_message and view.state not in ("starting", "running"):  # why it stopped or struggles
        parts.append(view.status_message)
    return " · ".join(parts)


class PlainLines:
    """Prints the changed streams' ``plain_line`` every ``period_s`` (and once more on ``stop``)."""

    def __init__(
        self, fold: Callable[[], DashboardState], write: Callable[[str], None], period_s: float
    ) -> None:
        """``fold()`` folds pending messages in and returns the state; ``write(line)`` prints one line."""
        self.fold = fold
        self.write = write
        self.period_s = period_s
        self._shown: dict[str, str] = {}
        self._setup_shown: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streamd-dashboard-plain", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.print_changes()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.print_changes()

    def print_changes(self) -> None:
        """Print each stream whose line differs from the one last printed for it (its set-up once)."""
        for name, view in list(self.fold().streams.items()):
            if view.setup and name not in self._setup_shown:
                self._setup_shown.add(name)
                self.write(f"{name}: {view.setup}")
            line = plain_line(view)
            if self._shown.get(name) != line:
                self._shown[name] = line
                self.write(line)
