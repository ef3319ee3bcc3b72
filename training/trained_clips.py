"""Which clips a checkpoint trained on, so that ``streamd evaluate`` can tell held-out figures from others.

Every training run (``streamd train --data`` and a TOML experiment, whatever its reader: all read files)
stores, in the checkpoint's ``extra``, a short digest of every training clip's bytes (``record``; about
22 bytes of header per clip, about a second to digest ESC-50's clips). ``evaluate`` digests the clips it
is given and finds those among them (``seen``): whatever their paths (a moved folder, a link, a copy) or
fold numbers, a training clip is recognised, and a clip is held out exactly when it was not trained on.
A clip re-encoded since (other bytes) is not recognised. Checkpoints that record no list (older ones,
the shipped models) give None.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

KEY = "trained_clips"  # in a checkpoint's ``extra``
SCHEME = "blake2b-64 of the file's bytes"
DIGEST_BYTES = 8


def clip_digest(path: Path) -> str | None:
    """The digest of one file's bytes (hex), or None when it cannot be read (the file check says why)."""
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    try:
        with Path(path).open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def record(paths: Iterable[Path]) -> dict[str, Any]:
    """What a checkpoint stores about the clips it trained on (``extra[KEY]``)."""
    digests = sorted({d for d in map(clip_digest, paths) if d is not None})
    return {"scheme": SCHEME, "count": len(digests), "digests": digests}


def recorded(extra: dict[str, Any]) -> set[str] | None:
    """The digests a checkpoint's ``extra`` records, or None when it records none (or in another scheme)."""
    entry = extra.get(KEY)
    if not isinstance(entry, dict) or entry.get("scheme") != SCHEME:
        return None
    digests = entry.get("digests")
    return {d for d in digests if isinstance(d, str)} if isinstance(digests, list) else None


def seen(paths: Iterable[Path], digests: set[str]) -> set[Path]:
    """The paths whose bytes are those of a recorded training clip."""
    return {path for path in paths if clip_digest(path) in digests}
