"""The live terminal dashboard: ``streamd.dashboard``'s rendering, refreshed by a ``rich.live.Live``.

``Dashboard.sink`` only appends to a bounded deque (thread-safe, never blocks); the refresh thread folds
the pending messages in before each render, at the terminal's width and height. While it runs:

- when the display and stderr are both the terminal, log records (warnings, and the native libraries'
  lines that ``streamd.native_stderr`` logs) are printed through the console, above the live display,
  instead of over it (stderr elsewhere, or the display stopped: they go to stderr as ever);
- on a terminal that cannot redraw (``TERM=dumb``) it prints changed plain lines instead
  (``streamd.dashboard_plain``);
- the console writes through ``TerminalFile``: its stream is looked up at each write (``sys.stdout`` or
  ``sys.stderr``, whatever they point at by then), and a write that fails (a full disk, a closed
  terminal) stops the dashboard's output, never the daemon; ``failure`` says why, for the command to
  report at the end (a reader that went away, ``... | head``, only stops it).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from streamd.dashboard import DashboardState, render_dashboard
from streamd.dashboard_plain import PlainLines
from streamd.sinks import is_terminal, silence_stream

PLAIN_PERIOD_S = 1.0  # a terminal that cannot redraw gets a stream's changed line at most this often


class TerminalFile:
    """A file for the dashboard's console: writes to the current ``sys.stdout`` / ``sys.stderr``; after a
    failed write, or once the reader has gone, further output is dropped."""

    def __init__(self, stderr: bool) -> None:
        self.stderr = stderr
        self.failure: str | None = None
        self.reader_gone = False

    def _target(self) -> Any:
        stream = sys.stderr if self.stderr else sys.stdout
        return getattr(stream, "rich_proxied_file", stream)  # under Live's redirection: the real one

    def write(self, text: str) -> int:
        self._guarded(lambda target: target.write(text))
        return len(text)

    def flush(self) -> None:
        self._guarded(lambda target: target.flush())

    def _guarded(self, call: Any) -> None:
        """``call(target)`` unless writing has stopped; a failure stops it (a reader gone too, quietly)."""
        if self.failure is not None or self.reader_gone:
            return
        try:
            call(self._target())
        except BrokenPipeError:  # ``... | head``: not a failure; the exit must not fail on it either
            self.reader_gone = True
            silence_stream(self._target())
        except (OSError, ValueError, AttributeError) as exc:  # ValueError: closed; None: no stream
            closed = not isinstance(exc, OSError)
            self.failure = "the output is closed" if closed else exc.strerror or str(exc)

    def isatty(self) -> bool:
        return is_terminal(self._target())

    def fileno(self) -> int:
        return self._target().fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._target(), "encoding", None) or "utf-8"


class _ConsoleLogHandler(logging.Handler):
    """Log records printed through the live console (above the display) while it draws on the terminal
    that is also stderr; once it stops writing, through Python's default handler (stderr) again."""

    def __init__(self, console: Console, file: TerminalFile) -> None:
        super().__init__(logging.WARNING)
        self.console = console
        self.file = file

    def emit(self, record: logging.LogRecord) -> None:
        if self.file.failure is not None or self.file.reader_gone:
            if logging.lastResort is not None:
                logging.lastResort.handle(record)
            return
        try:
            self.console.print(Text(self.format(record), style="yellow"), soft_wrap=True)
        except Exception:
            self.handleError(record)


class Dashboard:
    """A live terminal dashboard fed by ``sink(msg)`` from any thread."""

    def __init__(
        self,
        console: Console | None = None,
        refresh_hz: float = 4,
        top_k: int = 5,
        max_pending: int = 10000,
        stderr: bool = False,
    ) -> None:
        self.file = TerminalFile(stderr)
        self.console = console or Console(file=self.file)  # type: ignore[arg-type]
        self.refresh_hz = refresh_hz
        self.state = DashboardState(top_k=top_k)
        self._pending: deque[dict[str, Any]] = deque(maxlen=max_pending)
        self._render_lock = threading.Lock()
        self._live: Live | None = None
        self._plain: PlainLines | None = None
        self._log_handler: logging.Handler | None = None

    @property
    def failure(self) -> str | None:
        """Why the dashboard stopped writing to the terminal, if it did."""
        return self.file.failure

    def sink(self, msg: dict[str, Any]) -> None:
        """Queue a message for the next refresh; O(1), never blocks (the oldest pending one goes if full)."""
        self._pending.append(msg)

    def renderable(self) -> RenderableType:
        """Fold pending messages into the state and render it at the console's width and height."""
        with self._render_lock:
            self._fold()
            return render_dashboard(self.state, width=self.console.width, height=self.console.height - 1)

    def _fold(self) -> DashboardState:
        while self._pending:
            self.state.update(self._pending.popleft())
        return self.state

    def _folded(self) -> DashboardState:
        with self._render_lock:
            return self._fold()

    def _print_line(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def start(self) -> None:
        if self.console.is_terminal and self.console.is_dumb_terminal:  # cannot redraw: changed lines
            self._plain = PlainLines(self._folded, self._print_line, PLAIN_PERIOD_S)
            self._plain.start()
            return
        self._live = Live(
            console=self.console, refresh_per_second=self.refresh_hz, get_renderable=self.renderable
        )
        self._live.start()
        if self.console.is_terminal and is_terminal(sys.stderr):  # else log lines keep to stderr as ever
            self._log_handler = _ConsoleLogHandler(self.console, self.file)
            logging.getLogger().addHandler(self._log_handler)

    def stop(self) -> None:
        """Stop refreshing after one last render of everything received."""
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler = None
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._plain is not None:
            self._plain.stop()
            self._plain = None
