"""The ``streamd`` console command: as little as possible runs before the command line takes Ctrl-C.

The console script imports this module, whose own import costs nothing; the command line (argparse and
streamd's modules, tens of milliseconds) is imported inside ``entry``, where a Ctrl-C during that import
ends the process with 130 and no traceback, as one during the command does.
"""

from __future__ import annotations


def entry() -> None:
    """``streamd ...``: import the command line, then run it on ``sys.argv``."""
    try:
        from streamd.cli import entry as run_command_line
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    run_command_line()
