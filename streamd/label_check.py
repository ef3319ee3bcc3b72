"""Event rules must name labels the model has: a typo would otherwise silently watch nothing."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from streamd.errors import ConfigError
from streamd.events import EventConfig


def check_event_labels(cfg: EventConfig, labels: Sequence[str]) -> None:
    """Raise ``ConfigError`` for the first label in thresholds/allow/deny the model lacks (near matches)."""
    known = set(labels)
    for where, names in (
        ("events.thresholds", list(cfg.thresholds)),
        ("events.allow", list(cfg.allow)),
        ("events.deny", list(cfg.deny)),
    ):
        for name in names:
            if name not in known:
                near = difflib.get_close_matches(name, list(labels), n=3, cutoff=0.6)
                hint = f"did you mean {', '.join(near)}?" if near else f"the model has {len(labels)} labels"
                raise ConfigError(f"{where}: unknown label {name!r} ({hint})")
