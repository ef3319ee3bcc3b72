"""Ending the ``streamd`` process once its command is done, without the interpreter's slow teardown.

With torch imported, Python's own shutdown (module finalisers, torch's operator libraries) takes about half
a second on a 2-core machine, a visible share of a short ``replay`` or ``classify``. A command returns
only after it has closed what it opened (sockets, with their linger; files; its threads), so the command
line then flushes the standard streams and the logging handlers and leaves with ``os._exit``. Without
torch, with a non-daemon thread still running, or with ``STREAMD_DEBUG`` set, it exits the normal way.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import NoReturn


def fast_exit_allowed() -> bool:
    """torch is loaded (its teardown is the slow part), nothing else still runs, not debugging."""
    if "torch" not in sys.modules or os.environ.get("STREAMD_DEBUG"):
        return False
    main = threading.main_thread()
    return not any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate())


def finish(code: int) -> NoReturn:
    """Leave the process with ``code``: everything written is flushed first."""
    if not fast_exit_allowed():
        raise SystemExit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started with that descriptor closed
            continue
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away, or a stream already closed
            code = code or 1
    os._exit(code)
