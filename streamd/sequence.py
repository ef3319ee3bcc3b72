"""Per-stream sequence numbers on published messages, and the subscriber side that counts gaps.

The publisher stamps every message it hands to its socket with ``seq``: 0, 1, 2, ... per stream, with
no holes. ZeroMQ drops messages for a subscriber whose queue is past the high-water mark without telling
the publisher, so only a subscriber can know what it missed: ``GapCounter`` sees ``seq`` jump and counts
exactly the messages in between. A ``seq`` that goes back means the daemon restarted: a new run, not a
gap. One that goes back and then takes up again the numbers it had left means two publishers number one
stream name (two daemons publishing the same name through a proxy): its gaps are not gaps, so that stream
is counted no further, and the "gap" its second publisher's first message made (jumping ahead of the
first's numbers, before the stream could be told shared) is taken back out of the totals
(``GapCounter.shared``, ``GapCounter.withdrawn``). This module is pure: no threads, sockets or devices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Gap:
    """Messages ``first`` .. ``last`` (inclusive) of ``stream`` never arrived."""

    stream: str
    first: int
    last: int

    @property
    def missed(self) -> int:
        return self.last - self.first + 1

    def describe(self) -> str:
        span = f"seq {self.first}" if self.first == self.last else f"seq {self.first}-{self.last}"
        return f"missed {self.missed} message(s) of stream {self.stream} ({span})"


class SequenceStamper:
    """The publisher's side: the next ``seq`` of each stream (only advanced for messages sent)."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def peek(self, stream: str) -> int:
        """The ``seq`` the next message of ``stream`` gets."""
        return self._next.get(stream, 0)

    def advance(self, stream: str) -> None:
        """The message carrying ``peek(stream)`` was sent."""
        self._next[stream] = self._next.get(stream, 0) + 1


class GapCounter:
    """The subscriber's side: counts messages missed since each stream's first message was received.
    ``on_shared(stream)`` is called once for a stream found numbered by two publishers; from then on that
    stream is counted no further, and the jump its second publisher's first message made is withdrawn."""

    def __init__(self, on_shared: Callable[[str], None] | None = None) -> None:
        self._last: dict[str, int] = {}
        self._left: dict[str, int] = {}  # a stream's last seq before it last went back
        self._missed: dict[str, int] = {}  # per stream: messages missed
        self._gaps: dict[str, int] = {}  # per stream: contiguous runs of missed messages
        self._last_gap: dict[str, Gap] = {}  # per stream: the gap its latest message ended
        self._left_gap: dict[str, Gap] = {}  # per stream: the gap that led to ``_left`` (where it went back)
        self._on_shared = on_shared
        self.shared: list[str] = []  # streams two publishers number: their losses cannot be counted
        self.withdrawn = 0  # gaps seen in streams later found shared: taken back out of the totals
        self.restarts = 0  # times a stream's seq went back (a new daemon run)

    @property
    def missed(self) -> int:
        """Messages missed, all streams but the shared ones."""
        return sum(self._missed.values())

    @property
    def gaps(self) -> int:
        """Contiguous runs of missed messages, all streams but the shared ones."""
        return sum(self._gaps.values())

    def missed_in(self, stream: str) -> int | None:
        """Messages missed in ``stream``; None once it is found shared (its losses cannot be counted)."""
        return None if stream in self.shared else self._missed.get(stream, 0)

    def observe(self, msg: Mapping[str, Any]) -> Gap | None:
        """Fold in one received message; the gap before it, if any. Messages without ``seq`` are ignored."""
        seq, stream = msg.get("seq"), msg.get("stream")
        if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(stream, str):
            return None
        if stream in self.shared:
            return None
        last = self._last.get(stream)
        self._last[stream] = seq
        if last is None:
            return None
        left = self._left.get(stream)
        if left is not None and seq == left + 1 and seq != last + 1:  # the numbers it left go on
            self._share(stream)
            return None
        jump = self._last_gap.pop(stream, None)  # the gap that led to ``last``, if any
        if seq <= last:
            self.restarts += 1
            self._left[stream] = last
            if jump is not None:  # kept: if the stream proves shared, that jump was its second publisher
                self._left_gap[stream] = jump
            else:
                self._left_gap.pop(stream, None)
            return None
        if seq == last + 1:
            return None
        gap = Gap(stream, last + 1, seq - 1)
        self._missed[stream] = self._missed.get(stream, 0) + gap.missed
        self._gaps[stream] = self._gaps.get(stream, 0) + 1
        self._last_gap[stream] = gap
        return gap

    def _share(self, stream: str) -> None:
        """``stream`` is numbered by two publishers: counted no further, and the jump that led to where it
        went back (the second publisher's first numbers, no loss) is taken back out of the totals; its
        gaps before that stay counted (the first publisher's losses)."""
        self.shared.append(stream)
        if (jump := self._left_gap.pop(stream, None)) is not None:
            self._missed[stream] -= jump.missed
            self._gaps[stream] -= 1
            self.withdrawn += 1
        if self._on_shared is not None:
            self._on_shared(stream)
