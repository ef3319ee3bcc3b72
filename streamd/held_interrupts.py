"""Ctrl-C held back while a module imports: an import cut in half leaves a broken module behind, and one cut
inside torch's native start-up can kill the process outright (measured: exit by SIGINT or an abort in
3 of 30 tries at 0.45-0.75 s into ``streamd replay``). The interrupt is honoured once the import is done."""

from __future__ import annotations

import contextlib
import importlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def held_interrupts() -> Iterator[list[int]]:
    """Inside the block SIGINT is only recorded (in the yielded list); off the main thread nothing changes."""
    interrupted: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield interrupted
        return
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: interrupted.append(signum))
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def import_then_honour_interrupts(*modules: str) -> None:
    """Import ``modules`` with Ctrl-C held back; a Ctrl-C that came meanwhile is raised afterwards."""
    with held_interrupts() as interrupted:
        for name in modules:
            importlib.import_module(name)
    if interrupted:
        raise KeyboardInterrupt
