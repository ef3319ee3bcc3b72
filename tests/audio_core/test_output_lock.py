"""One run at a time per output: a second process is refused while the first holds the lock, and the
lock is free again once the holder is gone; ``streamd train`` into a held output folder is one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import clip_paths
from support.process import streamd_env

from audio_core.output_lock import OutputBusy, lock_output

HOLD = """
import sys, time
from pathlib import Path
from audio_core.output_lock import lock_output
held, note = lock_output(Path(sys.argv[1]), "out", "busy")
print("held", flush=True)
time.sleep(60)
"""


def _holder(lock: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_until_the_first_is_gone(tmp_path: Path) -> None:
    lock = tmp_path / "train.lock"
    proc = _holder(lock)
    try:
        with pytest.raises(OutputBusy, match=r"^busy here$"):
            lock_output(lock, "out", "busy here")
    finally:
        proc.kill()
        proc.wait()
    held, note = lock_output(lock, "out", "busy")  # the holder died: its lock went with it
    assert note is None
    held.close()


def test_training_into_a_folder_another_run_holds_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for clip in clip_paths(2) + clip_paths(2, fold=2):  # two classes, two real clips each
        label = f"class{clip.stem.rsplit('-', 1)[-1]}"
        (data / label).mkdir(parents=True, exist_ok=True)
        (data / label / clip.name).symlink_to(clip)
    out = tmp_path / "out"
    out.mkdir()
    proc = _holder(out / "train.lock")
    try:  # from a folder of its own (its feature cache goes there)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "streamd",
                "train",
                "--data",
                str(data),
                "--epochs",
                "1",
                "--out",
                str(out),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env=streamd_env(),
        )
    finally:
        proc.kill()
        proc.wait()
    assert result.returncode != 0 and result.stderr.startswith(f"streamd: error: {out} is being trained into")
    assert len(result.stderr.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["train.lock"]  # the refused run wrote nothing there
