"""One distinct character per label for the dashboard's timeline strip, and the legend that explains it."""

from __future__ import annotations

import string
from collections.abc import Iterable

_SPARE = string.digits + string.ascii_letters + "#$%&*+=?@"


def timeline_symbols(labels: Iterable[str]) -> dict[str, str]:
    """Labels (in order of first appearance) -> a character no other label in ``labels`` uses.

    A label gets its first letter, else that letter upper-cased, else the first spare character left.
    """
    out: dict[str, str] = {}
    taken: set[str] = set()
    for label in labels:
        if label in out:
            continue
        first = label[:1] or "?"
        choices = [first.lower(), first.upper(), *_SPARE]
        symbol = next((c for c in choices if c not in taken), "?")
        out[label] = symbol
        taken.add(symbol)
    return out


def legend(symbols: dict[str, str]) -> str:
    """``"c=cat C=clock_tick 0=crying_baby"``."""
    return " ".join(f"{symbol}={label}" for label, symbol in symbols.items())
