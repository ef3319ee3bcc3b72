"""The one type of every command line option that names a file or folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def path_arg(text: str) -> Path:
    """An option's path; an empty value (an unset shell variable) is refused, never read as the current
    folder (where it had named ``.`` and, for some options, failed far from the cause)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty (give a path)")
    return Path(text)
