"""ALSA's and PortAudio's own stderr prints go through the logger while ``NativeStderr`` is installed.

Real native output: libasound is asked to open a PCM that does not exist, which reports through its
error handler (``alsa:`` lines) or, with ALSA's default handler, prints on C's stderr, i.e. fd 2
(``portaudio:`` lines from the pipe). Python's own writes to ``sys.stderr`` must still reach stderr.
"""

from __future__ import annotations

import ctypes
import logging
import platform
import subprocess
import sys
import textwrap

import pytest

from streamd.native_stderr import COUNTER, NativeStderr, format_alsa

PCM = b"streamd_no_such_pcm"
SND_PCM_STREAM_CAPTURE = 1


def _asound() -> ctypes.CDLL:
    try:
        return ctypes.CDLL("libasound.so.2")
    except OSError:
        pytest.skip("libasound is not installed")


def _open_missing_pcm(lib: ctypes.CDLL) -> int:
    handle = ctypes.c_void_p()
    return lib.snd_pcm_open(ctypes.byref(handle), PCM, SND_PCM_STREAM_CAPTURE, 0)


def _routed(
    caplog: pytest.LogCaptureFixture, *, default_alsa_handler: bool
) -> tuple[NativeStderr, list[str]]:
    """Open the missing PCM (and write a Python stderr line) while routed; the logged messages."""
    lib = _asound()
    routed = NativeStderr()
    with caplog.at_level(logging.WARNING, logger="streamd.native_stderr"):
        routed.install()
        try:
            if default_alsa_handler:
                lib.snd_lib_error_set_handler(None)  # ALSA's default handler: fprintf(stderr, ...) from C
            assert _open_missing_pcm(lib) < 0
            print("python's own stderr line", file=sys.stderr)
        finally:
            routed.restore()
    return routed, [r.getMessage() for r in caplog.records if r.name == "streamd.native_stderr"]


def test_alsa_messages_reach_the_logger_not_fd2(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    routed, messages = _routed(caplog, default_alsa_handler=False)
    expected = f"Unknown PCM {PCM.decode()}"
    assert any(m.startswith("alsa: pcm.c:") and expected in m for m in messages), messages
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "streamd.native_stderr")
    err = capfd.readouterr().err
    assert "python's own stderr line" in err
    assert "ALSA lib" not in err and "Unknown PCM" not in err
    assert routed.counters(0) == {COUNTER: len(messages)}


def test_native_prints_on_fd2_are_logged_as_portaudio_lines(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    _, messages = _routed(caplog, default_alsa_handler=True)
    assert any(m.startswith("portaudio: ALSA lib pcm.c:") and "Unknown PCM" in m for m in messages), messages
    err = capfd.readouterr().err
    assert "python's own stderr line" in err and "ALSA lib" not in err
    # Restored: the same call prints raw on fd 2 again.
    assert _open_missing_pcm(_asound()) < 0
    assert "ALSA lib" in capfd.readouterr().err


SCRIPT = textwrap.dedent(
    """
    import ctypes, logging, sys
    from streamd.native_stderr import NativeStderr
    logging.basicConfig(format="LOG %(levelname)s %(message)s")
    lib = ctypes.CDLL("libasound.so.2")
    handle = ctypes.c_void_p()
    routed = NativeStderr()
    routed.install()
    lib.snd_pcm_open(ctypes.byref(handle), b"streamd_no_such_pcm", 1, 0)
    lib.snd_lib_error_set_handler(None)
    lib.snd_pcm_open(ctypes.byref(handle), b"streamd_no_such_pcm", 1, 0)
    print("python stderr while installed", file=sys.stderr)
    logging.getLogger("x").warning("a python log line")
    routed.restore()
    print(f"lines {routed.lines}", file=sys.stderr)
    """
)


def test_a_process_keeps_python_stderr_and_logs_native_lines() -> None:
    _asound()
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert "python stderr while installed" in lines
    assert "LOG WARNING a python log line" in lines  # a handler on the old sys.stderr: not fed back
    assert any(line.startswith("LOG WARNING alsa: pcm.c:") for line in lines), lines
    assert any(line.startswith("LOG WARNING portaudio: ALSA lib pcm.c:") for line in lines), lines
    assert not any(line.startswith("ALSA lib") for line in lines), lines
    assert not any("portaudio: LOG" in line for line in lines), lines  # no log line fed back
    assert "lines 2" in lines


def test_format_alsa_formats_one_safe_argument_only() -> None:
    libc = ctypes.CDLL(None)
    name = ctypes.c_char_p(b"hw:9")
    address = ctypes.cast(name, ctypes.c_void_p).value
    if sys.platform == "linux" and platform.machine().lower() in {"x86_64", "aarch64"}:
        assert format_alsa(b"Unknown PCM %s", address, libc) == "Unknown PCM hw:9"
        assert format_alsa(b"cannot find card '%i'", 7, libc) == "cannot find card '7'"
    assert format_alsa(b"%s and %s", address, libc) == "%s and %s"
    assert format_alsa(b"rate %.1f", 0, libc) == "rate %.1f"
    assert format_alsa(b"100%% of %*d", 3, libc) == "100% of %*d"
    assert format_alsa(None, None, libc) == ""


CLOSED_FD2 = textwrap.dedent(
    """
    import os
    from streamd.native_stderr import NativeStderr
    os.close(2)
    routed = NativeStderr()
    routed.install()
    routed.restore()
    print("ok", routed.installed)
    """
)


def test_a_closed_stderr_is_left_alone() -> None:
    done = subprocess.run([sys.executable, "-c", CLOSED_FD2], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok False", done


def test_a_damaged_mp3s_decoder_notes_are_routed_through_the_log(tmp_path, esc50, small_checkpoint) -> None:
    """mpg123 prints "Note: Illegal Audio-MPEG-Header ..." on fd 2, which broke a replay's dashboard: a
    replay of an MP3 routes such lines through the logger (``mpg123:``) and counts them."""
    import json

    import soundfile as sf
    from support.fixtures import free_tcp_port
    from support.process import run_streamd

    path = tmp_path / "damaged.mp3"
    sf.write(path, esc50.read_mono(esc50.clips(1)[0]), 16000, format="MP3")
    damaged = bytearray(path.read_bytes())
    damaged[3000:3400] = b"\x55" * 400  # garbled frames: the decoder resyncs and says so
    path.write_bytes(bytes(damaged))
    result = run_streamd(
        "replay",
        path,
        "--speed",
        "max",
        "--no-dashboard",
        "--json",
        "--checkpoint",
        small_checkpoint,
        "--publish",
        f"tcp://127.0.0.1:{free_tcp_port()}",
    )
    assert result.returncode == 0, result.describe()
    noted = [line for line in result.stderr.splitlines() if "Illegal Audio-MPEG-Header" in line]
    assert noted and all(line.startswith("streamd: warning: mpg123: ") for line in noted), result.stderr
    final = [json.loads(line) for line in result.stdout.splitlines()][-1]
    assert final["counters"][COUNTER] >= len(noted)


def test_an_alsa_message_ending_in_a_newline_is_one_line(caplog) -> None:
    """PulseAudio's ALSA plugin ends its messages in a newline: each was followed by a blank line."""
    routed = NativeStderr()
    with caplog.at_level(logging.WARNING):
        routed._alsa_message(b"pulse.c", 242, b"pulse_connect", 0, b"PulseAudio: Unable to connect\n", None)
    assert [r.getMessage() for r in caplog.records] == [
        "alsa: pulse.c:242:(pulse_connect) PulseAudio: Unable to connect"
    ]


def test_classify_routes_a_damaged_mp3s_decoder_notes(tmp_path, esc50, small_checkpoint) -> None:
    """One-shot classify printed mpg123's raw lines ("Note: Illegal Audio-MPEG-Header ...", "[src/libmpg123/
    layer3.c:...] error: ...") among its own; an MP3 by its bytes (another name) is recognised too."""
    import soundfile as sf
    from support.process import run_streamd

    path = tmp_path / "damaged.mp3"
    sf.write(path, esc50.read_mono(esc50.clips(1)[0]), 16000, format="MP3")
    damaged = bytearray(path.read_bytes())
    damaged[3000:3400] = b"\x55" * 400
    path.write_bytes(bytes(damaged))
    renamed = path.rename(tmp_path / "damaged.audio")
    for mode in ((), ("--windows", "--out", str(tmp_path / "w.csv"))):
        result = run_streamd("classify", renamed, "--checkpoint", small_checkpoint, *mode)
        assert result.returncode == 0, result.describe()
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        noted = [line for line in lines if "Illegal Audio-MPEG-Header" in line]
        assert noted and all(line.startswith("streamd: warning: mpg123: ") for line in noted), result.stderr
        raw = [line for line in lines if "libmpg123" in line and not line.startswith("streamd: ")]
        assert raw == [], result.stderr
