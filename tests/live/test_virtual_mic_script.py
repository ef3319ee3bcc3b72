"""``scripts/virtual_mic.sh`` is idempotent: start twice is one daemon, stop twice is fine, status tells."""

from __future__ import annotations

import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from support.fixtures import skip_or_fail
from support.virtual_mic import VirtualMic, VirtualMicUnavailable

pytestmark = pytest.mark.live


def test_start_and_stop_are_idempotent() -> None:
    if shutil.which("pulseaudio") is None:
        skip_or_fail("PulseAudio is not installed")
    mic = VirtualMic(Path(tempfile.mkdtemp(prefix="svms-", dir="/tmp")))
    try:
        try:
            mic.start()
        except VirtualMicUnavailable as exc:
            skip_or_fail(f"cannot start PulseAudio: {exc}")
        pid = mic.pid()
        assert pid is not None and mic.running()
        assert stat.S_ISFIFO(mic.fifo.stat().st_mode)
        mic.start()
        assert mic.pid() == pid, "a second start must reuse the running daemon"
        mic.stop()
        assert not mic.running() and not mic.fifo.exists()
        mic.stop()
        assert not mic.running()
        mic.start()  # and it comes back after a stop
        assert mic.running() and mic.pid() != pid
    finally:
        mic.stop()
        shutil.rmtree(mic.directory, ignore_errors=True)
