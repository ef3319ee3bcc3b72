"""Ctrl-C held back while a module imports: an import cut in half leaves a broken module behind, and one cut
inside torch's native start-up can kill the process outright (measured: exit by SIGINT or an abort in
3 of 30 tries at 0.45-0.75 s into ``streamd replay``). The interrupt is honoured once the import is done.
The other way round, ``call_interruptibly`` keeps a blocking native call from holding Ctrl-C back."""

from __future__ import annotations

import contextlib
import importlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


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


def call_interruptibly(fn: Callable[[], T], name: str) -> T:
    """``fn()`` run in a daemon thread named ``name`` while this thread waits where Ctrl-C reaches it: a
    native call that blocks (FFmpeg opening a URL) sees an interrupt only once it returns. On Ctrl-C the
    call is left to finish on its own; what it raises is raised here."""
    found: dict[str, Any] = {}

    def call() -> None:
        try:
            found["value"] = fn()
        except BaseException as exc:  # handed to the waiting thread
            found["error"] = exc

    worker = threading.Thread(target=call, name=name, daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.1)
    if "error" in found:
        raise found["error"]
    return found["value"]
