"""SIGINT/SIGTERM/SIGHUP as a stop event: never a deadlock, honoured while waiting for a subscriber."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support.net import wait_for_sockets
from support.paths import REPO
from support.process import StreamdProcess


def test_a_signal_while_the_main_thread_holds_the_events_lock_does_not_deadlock() -> None:
    """The main thread is inside the stop event's own lock (as within ``stop.wait()``) when the signal's
    handler runs: setting the event there would wait for that lock forever."""
    script = textwrap.dedent(
        """
        import os, signal, threading, time
        from streamd.signals import stop_on_signals

        stop = threading.Event()
        with stop_on_signals(stop):
            with stop._cond:  # what stop.wait() holds between its checks
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):  # bytecodes: the Python-level handler runs here
                    pass
            assert stop.wait(5.0), "the signal did not set the stop event"
        print("stopped")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and result.stdout.strip() == "stopped", result.stderr


def _idle(pid: int, timeout: float) -> bool:
    """Wait until the process has used no CPU time for half a second (its start-up is over)."""

    def cpu_ticks() -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    deadline, last = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        now = cpu_ticks()
        if now == last:
            return True
        last = now
        time.sleep(0.5)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])  # SIGHUP: its terminal closed
def test_a_stop_signal_while_waiting_for_a_subscriber_stops_at_once(
    clips, small_checkpoint, free_port, sig
) -> None:
    if signal.getsignal(sig) == signal.SIG_IGN:  # under nohup: inherited, and left ignored on purpose
        pytest.skip(f"{sig.name} is ignored here")
    args = [
        "replay", str(clips[0]), "--checkpoint", str(small_checkpoint), "--speed", "max", "--no-dashboard",
        "--json", "--publish", f"tcp://127.0.0.1:{free_port}", "--wait-subscriber", "60",
    ]  # fmt: skip
    proc = StreamdProcess(args).start()
    with proc:
        # started, loaded, waiting for a subscriber that never comes: bound (it binds before loading its
        # model) and idle; a fixed sleep signalled a start slowed by a loaded machine while still loading
        assert wait_for_sockets(free_port, "listen", 1, timeout=60), "the publisher never bound"
        assert _idle(proc.pid, timeout=60), "never idle: not waiting for a subscriber"
        sent = time.monotonic()
        proc.send_signal(sig)
        result = proc.wait(30)
        took = time.monotonic() - sent
    assert result.returncode == 0, result.describe()
    assert took < 3.0, f"stopped {took:.1f} s after {sig.name}"
    messages = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [m["type"] for m in messages] == ["status"] and messages[0]["state"] == "stopped"


def test_sighup_stays_ignored_under_nohup(clips, small_checkpoint, free_port) -> None:
    """``nohup streamd run`` asks to outlive the terminal: an ignored SIGHUP is not made a stop signal."""
    args = [
        "replay", str(clips[0]), "--checkpoint", str(small_checkpoint), "--speed", "max", "--no-dashboard",
        "--json", "--publish", f"tcp://127.0.0.1:{free_port}", "--wait-subscriber", "6",
    ]  # fmt: skip
    proc = StreamdProcess(args, prefix=["nohup"]).start()
    with proc:
        time.sleep(3.0)  # waiting for a subscriber
        proc.send_signal(signal.SIGHUP)
        result = proc.wait(30)
    assert result.returncode == 0, result.describe()
    messages = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert messages[-1]["state"] == "finished"  # waited its 6 s out and replayed the file


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_during_start_up_ends_the_command_as_ctrl_c_does(
    clips, small_checkpoint, free_port, sig
) -> None:
    """Bound but still importing torch and loading the model (before the run loop's own handling): the
    signal ends it as Ctrl-C would there, exit 130 without a traceback, not killed by the signal."""
    if signal.getsignal(sig) == signal.SIG_IGN:  # under nohup: inherited, and left ignored on purpose
        pytest.skip(f"{sig.name} is ignored here")
    args = [
        "replay", str(clips[0]), "--checkpoint", str(small_checkpoint), "--speed", "max", "--no-dashboard",
        "--json", "--publish", f"tcp://127.0.0.1:{free_port}",
    ]  # fmt: skip
    proc = StreamdProcess(args).start()
    with proc:
        assert wait_for_sockets(free_port, "listen", 1, timeout=60), "the publisher never bound"
        proc.send_signal(sig)  # it binds before torch is imported (about a second): still starting
        result = proc.wait(30)
    assert result.returncode == 130, result.describe()
    assert "Traceback" not in result.stderr and not result.stdout.strip(), result.describe()


def test_a_stop_signal_during_an_in_process_replay_is_not_taken_for_its_end(small_checkpoint) -> None:
    """``evaluate --streaming`` replays through ``replay_collect`` outside a run loop: a SIGTERM there
    stops the pipeline and reaches the command as Ctrl-C (exit 130), instead of a cut replay being
    scored as if the file had ended."""
    script = textwrap.dedent(
        f"""
        import os, signal, threading
        from streamd.collect import replay_collect
        from streamd.model_loading import load_model
        from streamd.signals import stop_signals_as_ctrl_c

        model = load_model({str(small_checkpoint)!r})
        with stop_signals_as_ctrl_c():
            threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
            try:
                replay_collect([{str(REPO / "examples" / "long.wav")!r}], model, speed=1.0)
            except KeyboardInterrupt:
                print("interrupted")
            else:
                print("returned as if done")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "interrupted", result.stdout + result.stderr
