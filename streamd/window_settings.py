"""What a ``classify --windows`` output depends on (its progress list's first line): ``settings`` of
this run, and ``as_recorded``, which makes them comparable with the settings an earlier streamd recorded,
so that a resumed run never mixes outputs of other settings into one file."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from audio_core.windows import WindowPlan
    from streamd.config_sections import WindowSection
    from streamd.model_loading import LoadedModel


def settings(
    args: argparse.Namespace, windows: WindowSection, loaded: LoadedModel, plan: WindowPlan
) -> dict[str, Any]:
    """What the output depends on (a resumed run must use the same): the checkpoint by name and by
    content, so that another model written over the same file is not mixed into the output; the window
    as the windows come out (a window given that equals the checkpoint's own is the checkpoint's, None);
    the precision the scores were computed in."""
    from audio_core.windows import checkpoint_plan, checkpoint_window_s
    from models.checkpoint import file_digest

    own = plan == checkpoint_plan(loaded.info, windows.hop_s)
    own_window_s = checkpoint_window_s(loaded.info)  # how an earlier streamd recorded it when given
    return {
        "model": str(args.checkpoint or args.model),
        "model_sha256": file_digest(loaded.path) if loaded.path is not None else None,
        "precision": loaded.precision,
        "own_window_s": own_window_s,
        "window_s": None if own else windows.window_s,
        "hop_s": windows.hop_s,
        "top_k": args.top_k,
        "min_score": args.min_score,
        "format": args.format,
    }


def as_recorded(recorded: Any, settings: dict[str, Any]) -> tuple[Any, dict[str, Any], list[str]]:
    """``recorded`` and ``settings`` made comparable for a list an earlier streamd wrote: what it did not
    record is left out (and named), and its window given as the checkpoint's own (``window_s`` 5.0, now
    recorded as None) is the checkpoint's."""
    unchecked: list[str] = []
    if not isinstance(recorded, dict):
        return recorded, settings, unchecked
    if "model_sha256" not in recorded:
        settings = {k: v for k, v in settings.items() if k != "model_sha256"}
        unchecked.append("checkpoint's content")
    if "precision" not in recorded:
        if settings.get("window_s") is None and recorded.get("window_s") == settings.get("own_window_s"):
            recorded = {**recorded, "window_s": None}
        settings = {k: v for k, v in settings.items() if k not in ("precision", "own_window_s")}
        unchecked.append("precision")
    return recorded, settings, unchecked


# the option that sets each recorded setting, to name in a refusal
_OPTION_OF = {
    "hop_s": "--hop-s",
    "window_s": "--window-s",
    "precision": "--precision",
    "top_k": "--top-k",
    "min_score": "--min-score",
    "format": "--format",
}


def differing(recorded: dict[str, Any], current: dict[str, Any]) -> tuple[str, str]:
    """``("key WAS -> NOW, ...", "the options that continue the output")``; None shows as ``unset``."""

    def shown(value: Any) -> str:
        return "unset" if value is None else str(value)

    changed, again = [], []
    for key in sorted(set(recorded) | set(current)):
        was, now = recorded.get(key), current.get(key)
        if was == now:
            continue
        changed.append(f"{key} {shown(was)} -> {shown(now)}")
        option = _OPTION_OF.get(key)
        if option:
            again.append(f"without {option}" if was is None else f"{option} {was}")
    return ", ".join(changed), " ".join(again)
