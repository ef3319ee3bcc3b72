"""What native audio libraries print on fd 2, routed through the logger while a device (or an MP3 file,
whose decoder mpg123 prints its notes there) is in use.

PortAudio and ALSA write their own diagnostics ("ALSA lib pcm.c:...", "Expression '...' failed in
'src/hostapi/alsa/...'") straight onto file descriptor 2, past Python: during a device outage some thirty
such lines corrupt the dashboard and the logs. ``NativeStderr.install``

- sets an ALSA error handler (``snd_lib_error_set_handler`` of libasound, where it loads) that logs each
  message at WARNING as ``alsa: FILE:LINE:(FUNCTION) MESSAGE[: ERROR]``;
- points fd 2 at a pipe whose reader thread logs every line at WARNING as ``portaudio: LINE``, after
  pointing ``sys.stderr`` (and the logging stream handlers writing to it) at a duplicate of the original
  fd 2, so that everything Python writes still reaches the real stderr.

``restore`` undoes both after draining the pipe. Every message is counted (``lines``); the daemon reports
the count as the status counter ``native_stderr_lines``. The daemon installs it for device sources and for
MP3 files (their lines prefixed ``mpg123: ``); the dashboard shows such lines above its display.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
import re
import select
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

log = logging.getLogger(__name__)

PIPE_PREFIX = "portaudio: "
DECODER_PREFIX = "mpg123: "
ALSA_PREFIX = "alsa: "
READ_POLL_S = 0.1
COUNTER = "native_stderr_lines"
# ABIs on which the first variadic argument after the five fixed ones still arrives in a register, so a
# callback declared with one more fixed argument reads it correctly (System V x86-64, AAPCS64 on Linux).
_VARARG_IN_REGISTER = {"x86_64", "amd64", "aarch64", "arm64"}
_CONVERSION = re.compile(rb"%[-+ #0]*(\d+|\*)?(\.(\d+|\*))?(hh|h|ll|l|L|q|j|z|t)?([a-zA-Z%])")
_INTEGER_OR_POINTER = set(b"diouxXcsp")

_ALSA_HANDLER = ctypes.CFUNCTYPE(
    None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p
)


def _text(raw: bytes | None) -> str:
    return raw.decode("utf-8", "replace") if raw else ""


def format_alsa(fmt: bytes | None, arg: int | None, libc: Any = None) -> str:
    """ALSA's printf-style message with its first variadic argument, where that can be done safely.

    Only a format with exactly one integer or pointer conversion (no ``*`` widths) is formatted, and only
    on ABIs where that argument is in a register (see ``_VARARG_IN_REGISTER``); any other format is
    returned as written (``%%`` as ``%``).
    """
    if not fmt:
        return ""
    conversions = [m for m in _CONVERSION.finditer(fmt) if m.group(5) != b"%"]
    safe = (
        libc is not None
        and len(conversions) == 1
        and b"*" not in conversions[0].group(0)
        and conversions[0].group(5)[0] in _INTEGER_OR_POINTER
        and platform.machine().lower() in _VARARG_IN_REGISTER
    )
    if not safe:
        return _text(fmt.replace(b"%%", b"%"))
    buf = ctypes.create_string_buffer(1024)
    libc.snprintf(buf, ctypes.c_size_t(len(buf)), fmt, ctypes.c_void_p(arg or 0))
    return _text(buf.value)


def _load(name: str) -> Any:
    path = ctypes.util.find_library(name)
    candidates = [path] if path else []
    candidates += {"asound": ["libasound.so.2"], "c": ["libc.so.6"]}.get(name, [])
    for candidate in candidates:
        try:
            return ctypes.CDLL(candidate)
        except OSError:
            continue
    return None


def _writes_fd2(stream: Any) -> bool:
    try:
        return stream is not None and stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


class NativeStderr:
    """Routes ALSA's error handler and whatever native code prints on fd 2 through ``logger``."""

    def __init__(self, logger: logging.Logger = log, prefix: str = PIPE_PREFIX) -> None:
        self.logger = logger
        self.prefix = prefix  # of the lines read from fd 2
        self.lines = 0
        self._lock = threading.Lock()
        self._installed = False
        self._piped = False
        self._alsa: Any = None
        self._libc: Any = None
        self._handler: Any = None  # the ctypes callback: kept referenced while ALSA may call it
        self._saved_fd = -1
        self._read_fd = -1
        self._stderr: IO[str] | None = None
        self._old_stderr: Any = None
        self._retargeted: list[logging.StreamHandler] = []  # type: ignore[type-arg]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def installed(self) -> bool:
        return self._installed

    def counters(self, stream_index: int) -> dict[str, int | float]:
        """Status counter hook: the native messages seen so far (process-wide, the same for each stream)."""
        return {COUNTER: self.lines}

    def _emit(self, line: str) -> None:
        with self._lock:
            self.lines += 1
        self.logger.warning("%s", line)

    # -- ALSA ------------------------------------------------------------------------------------------

    def _alsa_message(
        self, file: bytes | None, line: int, func: bytes | None, err: int, fmt: bytes | None, arg: int | None
    ) -> None:
        try:
            message = format_alsa(fmt, arg, self._libc).rstrip("\r\n")  # PulseAudio's plugin ends in one
            text = f"{ALSA_PREFIX}{_text(file)}:{line}:({_text(func)}) {message}"
            if err:
                self._alsa.snd_strerror.restype = ctypes.c_char_p
                text += f": {_text(self._alsa.snd_strerror(ctypes.c_int(err)))}"
            self._emit(text)
        except Exception:  # an exception must never cross back into C
            self._emit(f"{ALSA_PREFIX}unformattable message from {_text(file)}:{line}")

    def _install_alsa(self) -> None:
        self._alsa = _load("asound")
        self._libc = _load("c")
        if self._alsa is None:
            return
        self._handler = _ALSA_HANDLER(self._alsa_message)
        self._alsa.snd_lib_error_set_handler(self._handler)

    def _restore_alsa(self) -> None:
        if self._alsa is not None:
            self._alsa.snd_lib_error_set_handler(None)  # NULL: ALSA's own default handler again
        self._handler = None

    # -- fd 2 ------------------------------------------------------------------------------------------

    def _install_pipe(self) -> None:
        old = sys.stderr
        if old is not None:
            old.flush()
        self._saved_fd = os.dup(2)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._read_fd = read_fd
        if _writes_fd2(old):
            encoding = getattr(old, "encoding", None) or "utf-8"
            self._stderr = open(  # noqa: SIM115 - closed by restore
                self._saved_fd, "w", buffering=1, encoding=encoding, errors="backslashreplace", closefd=False
            )
            self._old_stderr = old
            sys.stderr = self._stderr
            for handler in logging.root.handlers + _all_handlers():
                if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                    handler.setStream(self._stderr)
                    self._retargeted.append(handler)
        self._stop.clear()
        self._thread = threading.Thread(target=self._read, name="native-stderr", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        pending = b""
        while True:
            stopping = self._stop.is_set()
            ready, _, _ = select.select([self._read_fd], [], [], 0 if stopping else READ_POLL_S)
            if not ready:
                if stopping:
                    break
                continue
            chunk = os.read(self._read_fd, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                self._line(raw)
        if pending:
            self._line(pending)

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r").strip()
        if not text:
            return
        if text.startswith((PIPE_PREFIX, DECODER_PREFIX, ALSA_PREFIX)):
            os.write(self._saved_fd, raw + b"\n")  # our own log line fed back through fd 2: pass it on
            return
        self._emit(self.prefix + text)

    def _restore_pipe(self) -> None:
        os.dup2(self._saved_fd, 2)  # the pipe's write end closes here (unless a child process holds it)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        for handler in self._retargeted:
            handler.setStream(self._old_stderr)
        self._retargeted = []
        if self._stderr is not None:
            self._stderr.flush()
            if sys.stderr is self._stderr:
                sys.stderr = self._old_stderr
            self._stderr.close()
            self._stderr = None
        os.close(self._read_fd)
        os.close(self._saved_fd)
        self._read_fd = self._saved_fd = -1

    # -- lifecycle -------------------------------------------------------------------------------------

    def install(self) -> None:
        """Start routing (idempotent)."""
        if self._installed:
            return
        self._install_alsa()
        try:
            self._install_pipe()
        except OSError:  # no fd 2 to redirect (closed) or no pipe to be had: ALSA's handler alone
            self._piped = False
        else:
            self._piped = True
        self._installed = True

    def restore(self) -> None:
        """Stop routing: ALSA's default handler, the original fd 2 and ``sys.stderr`` again (idempotent)."""
        if not self._installed:
            return
        self._installed = False
        self._restore_alsa()
        if self._piped:
            self._restore_pipe()


def _all_handlers() -> list[logging.Handler]:
    """The handlers of every logger created so far (the root's are listed by the caller)."""
    out: list[logging.Handler] = []
    for logger in list(logging.root.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            out.extend(logger.handlers)
    return out


def native_stderr_for(sources: Sequence[object]) -> NativeStderr | None:
    """A ``NativeStderr`` when any of ``sources`` is an input device (PortAudio) or an MP3 file, else None."""
    from streamd.device_source import DeviceSource
    from streamd.file_source import FileSource

    if any(isinstance(s, DeviceSource) for s in sources):
        return NativeStderr()
    if any(isinstance(s, FileSource) and s.info.format.upper() in ("MP3", "MPEG") for s in sources):
        return NativeStderr(prefix=DECODER_PREFIX)
    return None
