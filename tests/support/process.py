"""Run ``streamd`` as a real subprocess: a time limit, stdout/stderr/exit code captured, memory sampled.

``run_streamd(...)`` runs a command to the end. ``StreamdProcess`` starts one in the background (a
daemon under test), lets the test wait for output, send signals and finally collect the same ``Result``.
A process that outlives its time limit is killed and the test fails with what it printed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.paths import REPO

RSS_SAMPLE_S = 0.1


def streamd_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a ``streamd`` child: this checkout importable, one torch thread, no debug."""
    env = dict(os.environ)
    env.pop("STREAMD_DEBUG", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra or {})
    return env


def streamd_command(args: Sequence[str | Path], prefix: Sequence[str] = ()) -> list[str]:
    """``[*prefix, python, -m, streamd, *args]`` (``prefix`` e.g. ``unshare --user``)."""
    return [*prefix, sys.executable, "-m", "streamd", *map(str, args)]


def rss_mb(pid: int, field: str = "VmRSS") -> float | None:
    """Resident memory of ``pid`` in MiB (from /proc), or None once it has exited. ``field``: ``VmRSS``
    (now) or ``VmHWM`` (the most it has held so far, peaks between two samples included)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024.0
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return None


@dataclass
class Result:
    """What a finished ``streamd`` process showed: exit code, output, how long, resident memory samples."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float
    rss_samples_mb: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, MiB)
    high_water_mb: float = 0.0  # the largest resident memory the kernel recorded, at the last sample

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    @property
    def stdout_lines(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.strip()]

    def json_lines(self) -> list[dict[str, Any]]:
        """Every stdout line that is a JSON object (``--json`` output, ``streamd listen``)."""
        out = []
        for line in self.stdout_lines:
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    @property
    def peak_rss_mb(self) -> float:
        """The largest resident memory seen: the kernel's high-water mark, which also holds the peaks
        that fell between two samples (a short command's may well), or the largest sample."""
        return max(self.high_water_mb, max((mb for _, mb in self.rss_samples_mb), default=0.0))

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.args)}\nexit {self.returncode} after {self.duration_s:.1f} s\n"
            f"--- stderr ---\n{self.stderr[-4000:]}\n--- stdout (tail) ---\n{self.stdout[-2000:]}"
        )


class StreamdProcess:
    """A ``streamd`` command running in the background, its output read by threads as it comes."""

    def __init__(
        self,
        args: Sequence[str | Path],
        *,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
        cwd: Path = REPO,
    ) -> None:
        self.args = streamd_command(args, prefix)
        self._env = streamd_env(env)
        self._cwd = cwd
        self._out: list[str] = []
        self._err: list[str] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.rss_samples_mb: list[tuple[float, float]] = []
        self.high_water_mb = 0.0
        self.proc: subprocess.Popen[str] | None = None
        self.started = 0.0

    def start(self) -> StreamdProcess:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.args,
            cwd=self._cwd,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for stream, sink in ((self.proc.stdout, self._out), (self.proc.stderr, self._err)):
            self._threads.append(self._spawn(self._read, stream, sink))
        self._threads.append(self._spawn(self._sample_rss))
        return self

    @staticmethod
    def _spawn(target: Callable[..., None], *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        return thread

    def _read(self, stream: Any, sink: list[str]) -> None:
        for line in stream:
            with self._lock:
                sink.append(line)

    def _sample_rss(self) -> None:
        """Sample until the process has exited (it is not reaped here: ``wait`` reaps it, with its usage)."""
        assert self.proc is not None
        while self.proc.returncode is None:
            mb, high = rss_mb(self.proc.pid), rss_mb(self.proc.pid, "VmHWM")
            if mb is None:  # gone, or a zombie waiting to be reaped
                return
            self.rss_samples_mb.append((time.monotonic() - self.started, mb))
            if high is not None:
                self.high_water_mb = max(self.high_water_mb, high)
            time.sleep(RSS_SAMPLE_S)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stdout_text(self) -> str:
        with self._lock:
            return "".join(self._out)

    def stderr_text(self) -> str:
        with self._lock:
            return "".join(self._err)

    def json_lines(self) -> list[dict[str, Any]]:
        """The JSON objects printed on stdout so far."""
        with self._lock:
            lines = list(self._out)
        return [json.loads(line) for line in lines if line.startswith("{") and line.endswith("\n")]

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_for(self, predicate: Callable[[StreamdProcess], bool], timeout: float) -> bool:
        """Poll ``predicate(self)`` until it holds, the process exits, or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            if not self.running():
                time.sleep(0.1)  # let the readers drain the pipes
                return predicate(self)
            time.sleep(0.05)
        return predicate(self)

    def wait_for_json(self, match: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        """The first JSON line on stdout for which ``match`` holds (waiting up to ``timeout``)."""
        found: list[dict[str, Any]] = []

        def check(p: StreamdProcess) -> bool:
            found[:] = [m for m in p.json_lines() if match(m)][:1]
            return bool(found)

        self.wait_for(check, timeout)
        return found[0] if found else None

    def send_signal(self, sig: int = signal.SIGINT) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> Result:
        """Wait for the exit; past ``timeout`` kill it and fail the test showing its output."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not self._reap():
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"streamd did not exit within {timeout} s\n{self._result().describe()}")
            time.sleep(0.02)
        return self._result()

    def _reap(self) -> bool:
        """True once the process has exited; reaping it here also gives its peak resident memory (the
        kernel's, exact, where sampling may miss a short command's last growth)."""
        assert self.proc is not None
        if self.proc.returncode is not None:  # already reaped (by ``running`` or ``kill``)
            return True
        try:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere in the meantime
            self.proc.poll()
            return True
        if pid == 0:
            return False
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.high_water_mb = max(self.high_water_mb, usage.ru_maxrss / 1024.0)  # Linux: KiB
        return True

    def _result(self) -> Result:
        assert self.proc is not None
        duration = time.monotonic() - self.started
        for thread in self._threads:
            thread.join(5.0)
        return Result(
            self.args,
            self.proc.returncode if self.proc.returncode is not None else -9,
            self.stdout_text(),
            self.stderr_text(),
            duration,
            list(self.rss_samples_mb),
            self.high_water_mb,
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5.0)

    def __enter__(self) -> StreamdProcess:
        """``with`` guarantees the process is killed at the end; it does not start it."""
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def run_streamd(
    *args: str | Path,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
) -> Result:
    """Run ``streamd ARGS`` to its end (killed and failed past ``timeout``)."""
    return StreamdProcess(args, env=env, prefix=prefix).start().wait(timeout)


def assert_clean_error(result: Result, *fragments: str, exit_code: int | None = None) -> str:
    """A failure as users must see it: non-zero exit, one ``streamd: error:`` line naming the problem.

    Returns that line. ``fragments`` must all appear in it (case-insensitive); ``exit_code`` if given
    must match exactly.
    """
    assert result.returncode != 0, f"expected a failure\n{result.describe()}"
    if exit_code is not None:
        assert result.returncode == exit_code, f"exit {result.returncode} != {exit_code}\n{result.describe()}"
    assert "Traceback" not in result.stderr, f"a traceback reached the user\n{result.describe()}"
    errors = [line for line in result.stderr_lines if line.startswith("streamd: error:")]
    assert len(errors) == 1, f"expected exactly one error line\n{result.describe()}"
    line = errors[0]
    for fragment in fragments:
        assert fragment.lower() in line.lower(), f"{fragment!r} not in {line!r}\n{result.describe()}"
    return line


def assert_no_traceback(result: Result) -> None:
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.describe()
