"""The progress of ``classify --windows`` on stderr: a bar over files and hours of audio (``rich``), the
lines said above it, and the summary said at the end."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from audio_core.audio_file import STDIN


def total_seconds(paths: list[str]) -> float:
    """Audio length of the files, from their headers (unreadable ones and standard input, which can be
    read only once, count 0)."""
    from audio_core.audio_file import probe_audio
    from streamd.errors import AudioInputError

    total = 0.0
    for path in paths:
        if path != STDIN:
            with contextlib.suppress(AudioInputError):
                total += probe_audio(path).duration_s
    return total


class Progress:
    """A rich progress bar over files and audio hours on stderr (or nothing)."""

    def __init__(self, files: int, seconds: float, enabled: bool) -> None:
        self.bar: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self.bar = Bar(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:.2f}/{task.total:.2f}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self.files = self.bar.add_task("files", total=files)
            self.hours = self.bar.add_task("audio hours", total=seconds / 3600)
            self.bar.start()

    def advance(self, seconds: float) -> None:
        if self.bar is not None:
            self.bar.advance(self.files, 1)
            self.bar.advance(self.hours, seconds / 3600)

    def note(self, line: str) -> None:
        """A line on stderr above the bar."""
        if self.bar is not None:
            self.bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def stop(self) -> None:
        """End the bar (again: nothing); later lines go to stderr as they are."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def summary_lines(
    counts: dict[str, int], seconds: float, elapsed: float, out: str, given: int, distinct: int
) -> list[str]:
    """The last lines of a run: ``counts`` of files ``done``, ``failed``, ``partial`` of the ``todo``
    ones; ``given`` paths named ``distinct`` files (said when fewer: a file named twice is done once)."""
    rate = seconds / 3600 / (elapsed / 60) if elapsed > 0 else 0.0
    paths = f" ({given} paths given, {distinct} distinct file(s))" if distinct < given else ""
    lines = [
        f"streamd: {counts['done']} file(s), {seconds / 3600:.4f} h of audio, in {elapsed:.1f} s: "
        f"{rate:.3f} audio hours per minute{paths}"
    ]
    todo = counts["todo"]
    if counts["failed"]:
        lines.append(f"streamd: {counts['failed']} of {todo} file(s) could not be classified")
    if counts["partial"]:
        lines.append(
            f"streamd: {counts['partial']} of {todo} file(s) could not be read to the end: in part in {out}"
        )
    return lines
