"""Event clip files: their names, and retention over the folder (``streamd.clips`` writes them)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from streamd.config_sections import ClipsSection

CLIP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*_\d{8}T\d{6}_[A-Za-z0-9_-]+_\d+\.\d{2}s(-\d+)?\.flac$")


def clip_name(stream: str, wall_time: float, label: str, t_start: float) -> str:
    """The file name of an event's clip: stream, local wall-clock time, label, offset in the stream."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(wall_time))
    return f"{stream}_{stamp}_{re.sub(r'[^A-Za-z0-9_-]+', '_', label)}_{t_start:.2f}s.flac"


def is_own_clip(path: Path) -> bool:
    """A clip streamd wrote: its name is a ``clip_name`` (``-N`` added when taken) and its JSON sidecar
    is beside it. Retention deletes only these, never a user's own recordings in the same folder."""
    return bool(CLIP_NAME.match(path.name)) and path.with_suffix(".json").is_file()


def enforce_retention(folder: Path, cfg: ClipsSection, newest: Path) -> int:
    """Delete the oldest clips (and their sidecars) beyond max files, max bytes (clips and sidecars) or
    max age; only clips that streamd wrote (``is_own_clip``) count and are deleted, and never ``newest``,
    the one just written. Returns the size of ``newest`` where it alone is over ``max_bytes``, else 0."""
    if not (cfg.max_files or cfg.max_bytes or cfg.max_age_s):
        return 0
    clips = []
    for path in folder.glob("*.flac"):
        if not is_own_clip(path):  # files of anyone else in the folder are never touched
            continue
        try:
            st = path.stat()
            size = st.st_size + path.with_suffix(".json").stat().st_size
        except FileNotFoundError:
            continue
        clips.append((st.st_mtime, path.name, path, size))
    clips.sort()
    total = sum(size for *_, size in clips)
    now = time.time()
    over = 0
    for i, (mtime, _, path, size) in enumerate(clips):
        too_many = bool(cfg.max_files) and len(clips) - i > cfg.max_files
        too_big = bool(cfg.max_bytes) and total > cfg.max_bytes
        too_old = bool(cfg.max_age_s) and now - mtime > cfg.max_age_s
        if path == newest:
            over = size if cfg.max_bytes and size > cfg.max_bytes else 0
            continue
        if too_many or too_big or too_old:
            path.unlink(missing_ok=True)
            path.with_suffix(".json").unlink(missing_ok=True)
            total -= size
    return over
