"""The command line's quick exit: what was written arrives, the exit code is kept, and nothing that still
runs is cut short."""

from __future__ import annotations

import subprocess
import sys
import threading

from streamd.process_exit import fast_exit_allowed

PROGRAM = """
import atexit, logging, sys
IMPORT_TORCH
from streamd.process_exit import finish
atexit.register(lambda: sys.stderr.write("teardown"))  # runs only on the interpreter's normal exit
logging.basicConfig(stream=sys.stderr, format="%(message)s")
sys.stdout.write("x" * 200000)  # more than one buffer, the last part not yet flushed
sys.stdout.write("end")
logging.getLogger("t").warning("logged")
finish(3)
"""


def _run(import_torch: bool) -> subprocess.CompletedProcess[str]:
    program = PROGRAM.replace("IMPORT_TORCH", "import torch" if import_torch else "")
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)


def test_everything_written_arrives_and_the_code_is_kept():
    done = _run(import_torch=True)
    assert done.returncode == 3
    assert done.stdout == "x" * 200000 + "end"
    assert done.stderr.strip() == "logged"  # and no "teardown": the quick exit was taken


def test_without_torch_the_exit_is_the_normal_one():
    done = _run(import_torch=False)
    assert done.returncode == 3 and done.stdout.endswith("end")
    assert done.stderr.split() == ["logged", "teardown"]


def test_a_running_non_daemon_thread_means_the_normal_exit():
    import torch  # noqa: F401  (the quick exit is only for processes with torch loaded)

    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, daemon=False)
    worker.start()
    try:
        assert not fast_exit_allowed()
    finally:
        stop.set()
        worker.join()


def test_debugging_keeps_the_normal_exit(monkeypatch):
    import torch  # noqa: F401

    monkeypatch.setenv("STREAMD_DEBUG", "1")
    assert not fast_exit_allowed()
