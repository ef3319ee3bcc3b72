"""Argument parsing of the scripts beside the package (``scripts/``): bad input is one line
``SCRIPT: error: ...`` and exit 2, as streamd's own commands say it (no usage text, no traceback)."""

from __future__ import annotations

import argparse
import math
from typing import NoReturn


class ScriptParser(argparse.ArgumentParser):
    """A script's parser: an error is one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive(text: str) -> float:
    """A positive finite number (an option's type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value
