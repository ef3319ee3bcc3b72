"""Ctrl-C during an import is held back and honoured once the import is complete."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from streamd.held_interrupts import held_interrupts, import_then_honour_interrupts


def test_a_ctrl_c_inside_the_block_is_recorded_not_raised():
    before = signal.getsignal(signal.SIGINT)
    with held_interrupts() as interrupted:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs between bytecodes: no KeyboardInterrupt here
    assert interrupted == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is before


def test_an_import_interrupted_midway_completes_then_the_interrupt_is_raised(tmp_path, monkeypatch):
    module = tmp_path / "slow_module_for_interrupts.py"
    module.write_text(
        "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(0.05)\nDONE = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        import_then_honour_interrupts("slow_module_for_interrupts")
    assert sys.modules["slow_module_for_interrupts"].DONE  # the import ran to its end
    del sys.modules["slow_module_for_interrupts"]


def test_without_an_interrupt_nothing_is_raised():
    import_then_honour_interrupts("json")


def test_ctrl_c_while_the_console_command_imports_its_command_line_is_exit_130():
    """The console script's entry imports the command line itself: a Ctrl-C during that import (a real
    SIGINT, sent from inside it) ends the process with 130 and no traceback."""
    import subprocess

    code = (
        "import os, signal, sys, time\n"
        "class Interrupting:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'streamd.cli':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "            time.sleep(0.05)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Interrupting())\n"
        "from streamd.console import entry\n"
        "entry()\n"
    )
    command = [sys.executable, "-c", code, "--version"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 130
    assert "Traceback" not in done.stderr and done.stdout == ""
