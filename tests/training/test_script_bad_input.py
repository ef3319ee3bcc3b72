"""The scripts the user docs name (``scripts/false_events.py``, ``scripts/make_short_clips.py``): bad input
is one line on stderr and exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.paths import ESC50, REPO

SHIPPED = REPO / "streamd" / "default_models" / "default.safetensors"


def _refused(script: str, *args: str) -> str:
    """Run ``scripts/SCRIPT ARGS``; its one stderr line after checking exit 2 and no traceback."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"{script}: error: "), proc.stderr
    return proc.stderr


def test_false_events_refuses_a_bad_checkpoint_and_non_positive_numbers(tmp_path: Path) -> None:
    missing = tmp_path / "missing.safetensors"
    assert f"{missing}: no such checkpoint file" in _refused("false_events.py", str(missing))
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    assert "not a readable safetensors" in _refused("false_events.py", str(tmp_path / "junk.safetensors"))
    for option, value in (("--minutes", "0"), ("--minutes", "nan"), ("--hop", "-1"), ("--window", "inf")):
        err = _refused("false_events.py", str(SHIPPED), option, value)
        assert f"argument {option}: must be a positive finite number" in err
    assert "--hop must be a multiple of the frame shift" in _refused(
        "false_events.py", str(SHIPPED), "--hop", "0.155"
    )


def test_make_short_clips_refuses_a_missing_esc50_folder_and_bad_seconds(tmp_path: Path) -> None:
    out = tmp_path / "out"
    err = _refused("make_short_clips.py", str(tmp_path / "nonexistent"), str(out), "--esc10")
    assert "nonexistent: not an ESC-50 folder" in err
    assert "argument --seconds: must be a positive finite number" in _refused(
        "make_short_clips.py", str(ESC50), str(out), "--esc10", "--seconds", "0"
    )
    assert not out.exists()
